"""Environment sources: plain files of environments, and domain folders of stateful tasks (tau-bench style).

A domain folder holds one sub-folder per domain (`tools.json`, `codes.json`, `wiki.md`, one JSON file per
database table) and task files (`tasks*.jsonl`: `instruction`, `actions`, `outputs`, `data_source`). Each task
becomes an `Environment` that names its domain instead of carrying the database.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ftrl.env.io import read_envs
from ftrl.env.record import Domain, Environment
from ftrl.jsonl import DataError, iter_jsonl

TASK_FIELDS = ("instruction", "actions")


@dataclass
class EnvSource:
    """Environments loaded from one path, with the domains that their stateful tools run in."""

    path: Path
    envs: list[Environment]
    domains: dict[str, Domain] = field(default_factory=dict)

    def domain_of(self, env: Environment) -> Domain | None:
        """The domain an environment runs in; a clear error if it names one this source does not have."""
        if env.domain is None:
            return None
        if env.domain not in self.domains:
            raise DataError(self.path, None, "domain", f"unknown domain {env.domain!r}; known: {sorted(self.domains)}")
        return self.domains[env.domain]

    def episode_kwargs(self, env: Environment) -> dict[str, Any]:
        """Keyword arguments for `ToolRuntime.episode`: the codes, plus the domain's shared initial state."""
        domain = self.domain_of(env)
        if domain is None:
            return {"codes": env.codes}
        return {"codes": env.codes, "state": domain.state, "state_kwarg": domain.state_kwarg, "state_key": domain.name}


def is_domain_folder(path: str | Path) -> bool:
    folder = Path(path)
    return folder.is_dir() and any((child / "codes.json").exists() for child in folder.iterdir() if child.is_dir())


def load_source(path: str | Path) -> EnvSource:
    """Load a JSONL/Parquet environment file, or a domain folder with its task files."""
    source = Path(path)
    if not source.exists():
        raise DataError(source, None, None, "no such file or folder")
    if source.is_dir():
        if not is_domain_folder(source):
            raise DataError(source, None, None, "a folder must contain domain sub-folders with codes.json")
        loaded = load_domain_folder(source)
    else:
        loaded = EnvSource(source, read_envs(source))
    if not loaded.envs:
        raise DataError(source, None, None, "no environments in it (an empty file or folder)")
    return loaded


def load_domain_folder(path: str | Path, task_files: list[Path] | None = None) -> EnvSource:
    """Load every domain sub-folder and every `tasks*.jsonl` task of a tau-bench style folder (or only the tasks
    of `task_files`)."""
    folder = Path(path)
    prefix = folder.name
    domains = {
        f"{prefix}/{child.name}": Domain.from_dir(child, name=f"{prefix}/{child.name}")
        for child in sorted(folder.iterdir())
        if (child / "codes.json").exists()
    }
    envs = []
    for task_file in task_files if task_files is not None else sorted(folder.glob("tasks*.jsonl")):
        for line, row in iter_jsonl(task_file):
            envs.append(task_environment(row, domains, task_file, line))
    return EnvSource(folder, envs, domains)


def task_environment(row: dict[str, Any], domains: dict[str, Domain], path: Path, line: int) -> Environment:
    """A stateful task as an environment: the domain's rules as system prompt, gold actions as gold calls."""
    for name in TASK_FIELDS:
        if name not in row:
            raise DataError(path, line, name, "missing required task field")
    domain_name = row.get("data_source", "")
    if not isinstance(domain_name, str):
        raise DataError(path, line, "data_source", f"must be a domain name like 'tau-bench/airline': {domain_name!r}")
    # the folder may have any name: a task's `tau-bench/airline` finds the sub-folder `airline`
    by_leaf = {name.rsplit("/", 1)[-1]: name for name in domains}
    domain_key = domain_name if domain_name in domains else by_leaf.get(domain_name.rsplit("/", 1)[-1])
    if domain_key is None:
        known = sorted(by_leaf)
        raise DataError(path, line, "data_source", f"names unknown domain {domain_name!r}; the folder has {known}")
    domain = domains[domain_key]
    extra = {key: value for key, value in row.items() if key not in ("actions", "data_source")}
    extra.update(domain=domain_key, gold_calls=row["actions"])
    return Environment(
        messages=[{"role": "system", "content": domain.rules}],
        tools=domain.tools,
        codes=domain.codes,
        unsolved_set={},
        solve_rate=0.0,
        answer="",
        data_source=domain_name,
        split="test",
        extra=extra,
    )
