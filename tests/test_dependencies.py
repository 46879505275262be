"""pyproject.toml declares what src/ftrl imports: every third-party import is declared, every declared distribution
(outside the tool extras `test` and `dev`) is imported, so neither list drifts from the code."""

from __future__ import annotations

import ast
import re
import sys
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
#: Distributions imported under a name other than their normalized one.
IMPORT_NAMES = {"pyyaml": "yaml", "mlflow-skinny": "mlflow"}
#: Declared but never imported by ftrl: what transformers itself needs for something ftrl asks of it.
USED_BY_TRANSFORMERS = {
    "accelerate": "transformers refuses to load a GGUF file without it (the embedded model's conversion)",
    "gguf": "transformers reads GGUF files with it (the embedded model's conversion)",
}
#: Imported but not declared: optional integrations, used only when the user has installed them.
OPTIONAL_IMPORTS = {
    "lm_eval": "eval.benchmarks.general runs lm-evaluation-harness only when it is installed",
    "json_repair": "formats.llama31 tries it as a last resort only when it is installed",
}


def import_name(requirement: str) -> str:
    """`huggingface-hub>=1.0,<3` -> `huggingface_hub`, `verl[verl-core]==0.9.1` -> `verl`."""
    match = re.match(r"[A-Za-z0-9][A-Za-z0-9._-]*", requirement.strip())
    assert match, f"unparsable requirement {requirement!r}"
    name = re.sub(r"[-_.]+", "-", match.group(0)).lower()
    return IMPORT_NAMES.get(name, name.replace("-", "_"))


def declared() -> dict[str, str]:
    """Import name -> the dependency group declaring it (`core` or an extra), without the `test`/`dev` tools."""
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    groups = {"core": project["dependencies"], **project.get("optional-dependencies", {})}
    return {
        import_name(requirement): group
        for group, requirements in groups.items()
        if group not in ("test", "dev")
        for requirement in requirements
    }


def runtime_nodes(tree: ast.AST) -> list[ast.AST]:
    """Every node of `tree` but those under `if TYPE_CHECKING:` (imports for type checkers only)."""
    nodes, stack = [], [tree]
    while stack:
        node = stack.pop()
        nodes.append(node)
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
            stack += node.orelse
        else:
            stack += ast.iter_child_nodes(node)
    return nodes


def imported() -> dict[str, set[str]]:
    """Top-level third-party module -> the files of src/ftrl importing it at run time (anywhere in the file)."""
    found: dict[str, set[str]] = {}
    for path in sorted((ROOT / "src" / "ftrl").rglob("*.py")):
        for node in runtime_nodes(ast.parse(path.read_text(), filename=str(path))):
            if isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                names = [node.module]
            else:
                continue
            for name in names:
                top = name.partition(".")[0]
                if top not in sys.stdlib_module_names and top not in ("ftrl", "__future__"):
                    found.setdefault(top, set()).add(str(path.relative_to(ROOT)))
    return found


def test_every_third_party_import_is_declared() -> None:
    missing = {name: files for name, files in imported().items() if name not in declared()}
    assert set(missing) == set(OPTIONAL_IMPORTS), f"imported but not declared in pyproject.toml: {missing}"


def test_every_declared_dependency_is_imported() -> None:
    unused = {name: group for name, group in declared().items() if name not in imported()}
    assert set(unused) == set(USED_BY_TRANSFORMERS), f"declared in pyproject.toml but never imported: {unused}"


def test_scanner_sees_local_imports_and_normalizes_names() -> None:
    """The scan counts imports inside functions (most heavy ones are there) but not those for type checkers only,
    and names map as pip spells them."""
    found = imported()
    assert "src/ftrl/models.py" in found["huggingface_hub"]  # only imported inside functions
    assert "src/ftrl/train/trainer.py" not in found["transformers"]  # only under TYPE_CHECKING there
    assert import_name("Jinja2>=3.1") == "jinja2" and import_name("PyYAML") == "yaml"
    assert import_name("verl[verl-core]==0.9.1") == "verl"
