"""Static validation of environments: every problem named by field, nothing executed in this process.

Code is only parsed here (`ast`); running it to check that it defines its function is the runtime's job
(`ToolRuntime.check`), because environment code is generated and untrusted.
"""

from __future__ import annotations

import ast
import hashlib
import json
import os
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ftrl.env.io import iter_rows, row_to_environment
from ftrl.env.record import Environment, tool_name
from ftrl.jsonl import DataError

if TYPE_CHECKING:
    from ftrl.env.domains import EnvSource


@dataclass(frozen=True)
class Issue:
    """One validation problem: the field it concerns and what is wrong. A warning marks a row that can still be
    used but looks wrong (e.g. schema parameters the code does not accept: a call with them errors, as it did for
    the reference); an error marks a row that cannot be used."""

    field: str
    message: str
    warning: bool = False

    def __str__(self) -> str:
        return f"{'warning: ' if self.warning else ''}field {self.field!r}: {self.message}"


def validate_environment(env: Environment, *, state_kwarg: str | None = None, parse_code: bool = True) -> list[Issue]:
    """All static problems of one environment (an empty list means valid).

    `state_kwarg` names the keyword through which stateful (domain) tools receive their state; it is allowed
    in function signatures without appearing in the schema. Without `parse_code` the tool code is not parsed
    (every command that reads rows checks them this way, cheaply; the commands that run tools load every code
    in the isolated runtime first, which finds what parsing would).
    """
    issues: list[Issue] = []
    issues += _check_messages(env.messages)
    schemas = _check_tools(env.tools, issues)
    for name in schemas:
        if name not in env.codes:
            issues.append(Issue("codes", f"tool {name!r} has a schema but no code"))
    for name, source in env.codes.items():
        if name not in schemas:
            issues.append(Issue("codes", f"code for {name!r} has no tool schema"))
            continue
        if parse_code:
            issues += _check_code(name, source, schemas[name], state_kwarg)
    for name in env.unsolved_set:
        if name not in schemas:
            issues.append(Issue("unsolved_set", f"key {name!r} is not one of the tools"))
    if not 0.0 <= env.solve_rate <= 1.0:
        issues.append(Issue("solve_rate", f"must be within [0, 1], got {env.solve_rate}"))
    if env.pending_count == 0 and env.solve_rate < 1.0 and env.domain is None:
        issues.append(Issue("unsolved_set", "has no pending sub-answer although solve_rate < 1"))
    return issues


def _check_messages(messages: list[dict[str, Any]]) -> list[Issue]:
    if not messages:
        return [Issue("messages", "is empty: an environment needs at least the user question")]
    issues = []
    for index, message in enumerate(messages):
        if message.get("role") not in ("system", "user", "assistant", "tool"):
            issues.append(Issue("messages", f"message {index} has unknown role {message.get('role')!r}"))
    return issues


def _check_tools(tools: list[dict[str, Any]], issues: list[Issue]) -> dict[str, dict[str, Any]]:
    """Map tool name -> parameter schema, recording malformed or duplicate schemas."""
    schemas: dict[str, dict[str, Any]] = {}
    for index, schema in enumerate(tools):
        name = tool_name(schema)
        function = schema.get("function", schema)
        if not name:
            issues.append(Issue("tools", f"tool {index} has no function name"))
            continue
        if name in schemas:
            issues.append(Issue("tools", f"tool {name!r} is defined twice"))
        parameters = function.get("parameters") or {}
        if not isinstance(parameters, dict) or not isinstance(parameters.get("properties", {}), dict):
            issues.append(Issue("tools", f"tool {name!r}: 'parameters' must be an object schema with 'properties'"))
            parameters = {}
        for required in parameters.get("required", []) or []:
            if required not in (parameters.get("properties") or {}):
                issues.append(Issue("tools", f"tool {name!r}: required parameter {required!r} is not in properties"))
        schemas[name] = parameters
    return schemas


def _check_code(name: str, source: str, parameters: dict[str, Any], state_kwarg: str | None) -> list[Issue]:
    """`_parse_check`, once per distinct (tool, code, parameters): files of states repeat each code many times."""
    key = (name, source, json.dumps(parameters, sort_keys=True, default=str), state_kwarg)
    found = _CODE_CHECKS.get(key)
    if found is None:
        if len(_CODE_CHECKS) > 4096:
            _CODE_CHECKS.clear()
        found = _CODE_CHECKS[key] = _parse_check(name, source, parameters, state_kwarg)
    return list(found)


_CODE_CHECKS: dict[tuple[str, str, str, str | None], list[Issue]] = {}


def _parse_check(name: str, source: str, parameters: dict[str, Any], state_kwarg: str | None) -> list[Issue]:
    try:
        module = ast.parse(source)
    except SyntaxError as error:
        return [Issue("codes", f"code of {name!r} does not compile: {error.msg} (line {error.lineno})")]
    except (ValueError, RecursionError, MemoryError) as error:
        return [Issue("codes", f"code of {name!r} cannot be parsed: {error}")]
    function = next(
        (
            node
            for node in module.body
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)) and node.name == name
        ),
        None,
    )
    if function is None:
        return [Issue("codes", f"code of {name!r} does not define a top-level function {name!r}")]
    args = function.args
    if args.kwarg is not None:
        return []
    accepted = {a.arg for a in args.posonlyargs + args.args + args.kwonlyargs}
    missing = [p for p in (parameters.get("properties") or {}) if p not in accepted and p != state_kwarg]
    if missing:
        message = f"schema parameters of {name!r} missing from its signature: {', '.join(missing)}"
        return [Issue("codes", message, warning=True)]
    return []


#: Runs each tool's code in isolation and returns `{tool: None | error}` (`ToolRuntime.check` fits).
CodeChecker = Callable[[Mapping[str, str]], Mapping[str, "str | None"]]
#: The same for many environments at once (`ToolRuntime.check_many` fits).
BatchCodeChecker = Callable[[Sequence[Mapping[str, str]]], Sequence[Mapping[str, "str | None"]]]


@dataclass(frozen=True)
class LoadFailure:
    """A tool whose code does not compile, raises when loaded, or does not define its function: every call to it
    fails. `row` is the environment's 0-based index."""

    row: int
    tool: str
    error: str


def load_failures(envs: Sequence[Environment], check_many: BatchCodeChecker) -> list[LoadFailure]:
    """Every (row, tool) whose code fails to load in isolation. Each distinct (tool, code) loads once, together
    with the other new codes of the first environment that has it (its calls share one process too), and all
    environments go to `check_many` in one batch."""
    first_seen: set[tuple[str, str]] = set()
    batch: list[dict[str, str]] = []
    for env in envs:
        new = {name: code for name, code in env.codes.items() if (name, code) not in first_seen}
        first_seen.update(new.items())
        if new:
            batch.append(new)
    errors = {
        (name, codes[name]): error
        for codes, results in zip(batch, check_many(batch) if batch else [], strict=True)
        for name, error in results.items()
        if error is not None
    }
    return [
        LoadFailure(row, name, errors[(name, code)])
        for row, env in enumerate(envs)
        for name, code in env.codes.items()
        if (name, code) in errors
    ]


@dataclass
class RowReport:
    """Validation outcome of one row: its 0-based index, its 1-based file line, and the problems found."""

    path: str
    row: int
    line: int | None
    issues: list[Issue]
    env: Environment | None = None

    @property
    def ok(self) -> bool:
        """No errors (warnings allowed)."""
        return not any(not issue.warning for issue in self.issues)

    @property
    def warned(self) -> bool:
        return any(issue.warning for issue in self.issues)


def validate_path(path: str | Path, checker: CodeChecker | None = None) -> list[RowReport]:
    """Validate every row of an environment file or domain folder, continuing past bad rows.

    With a `checker`, each distinct set of tool codes is also executed once in isolation to confirm that it
    defines its functions.
    """
    from ftrl.env.domains import is_domain_folder, load_domain_folder

    if not Path(path).exists():
        raise DataError(path, None, None, "no such file or folder")
    reports: list[RowReport] = []
    if is_domain_folder(path):
        source = load_domain_folder(path)
        for index, env in enumerate(source.envs):
            domain = source.domain_of(env)
            issues = validate_environment(env, state_kwarg=domain.state_kwarg if domain else None)
            reports.append(RowReport(str(path), index, None, issues, env))
    else:

        def record_error(error: DataError) -> None:
            reports.append(RowReport(str(path), len(reports), error.line, [Issue(error.field or "-", error.message)]))

        for line, row in iter_rows(path, on_error=record_error):
            try:
                env = row_to_environment(row, path, line, check=False)
            except DataError as error:
                record_error(error)
                continue
            reports.append(RowReport(str(path), len(reports), line, validate_environment(env), env))
    if checker is not None:
        _run_checker(reports, checker)
    return reports


def _run_checker(reports: list[RowReport], checker: CodeChecker) -> None:
    results: dict[str, Mapping[str, str | None]] = {}
    for report in reports:
        if report.env is None or any(issue.field == "codes" and not issue.warning for issue in report.issues):
            continue
        key = hashlib.sha256(json.dumps(report.env.codes, sort_keys=True).encode()).hexdigest()
        if key not in results:
            results[key] = checker(report.env.codes)
        for name, error in results[key].items():
            if error is not None:
                report.issues.append(Issue("codes", f"code of {name!r} fails when loaded: {error}"))


class BrokenToolCode(ValueError):
    """Environments whose tool code cannot run; the message lists every broken row."""


def check_tool_code(source: EnvSource, count: int | None = None, timeout_s: float = 10.0) -> None:
    """Refuse environments whose tool code cannot run, before a model starts: every call to such a tool would error
    and the run would score it 0 without saying why. The code is untrusted, so it compiles and loads only in the
    isolated runtime (each distinct code once, all in one batch over the workers), as a call with a `timeout_s`
    limit would load it; every broken row is listed."""
    from ftrl.runtime import RuntimeConfig, ToolRuntime

    envs = source.envs[:count]
    distinct = len({code for env in envs for code in env.codes.values()})
    if not distinct:
        return
    workers = min(os.cpu_count() or 1, distinct)
    with ToolRuntime(RuntimeConfig(timeout_s=timeout_s, workers=workers)) as runtime:
        failures = load_failures(envs, runtime.check_many)
    if failures:
        rows = len({failure.row for failure in failures})
        listed = "\n".join(f"  row {f.row}, field 'codes', tool {f.tool!r}: {f.error}" for f in failures)
        raise BrokenToolCode(
            f"{source.path}: {rows} environment(s) with tool code that cannot run (every call to it would fail):\n"
            f"{listed}\nFix or drop these rows (`ftrl validate {source.path}` lists every problem)"
        )
