"""Read and write environments as JSONL or Parquet in the reference format, and bridge to HF `datasets`.

JSONL round trips are byte-exact for reference files. Parquet stores messages as native nested columns (what
verl's dataset loader expects); nulls that Arrow adds to fill heterogeneous message structs are dropped on
read, so values compare equal to the JSONL ones.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ftrl.env.record import JSON_STRING_COLUMNS, Environment
from ftrl.jsonl import DataError, JsonlAppender, atomic_path, iter_jsonl, write_jsonl_atomic

if TYPE_CHECKING:
    import datasets

PARQUET_SUFFIXES = (".parquet", ".pq")


def is_parquet(path: str | Path) -> bool:
    return str(path).endswith(PARQUET_SUFFIXES)


def iter_rows(
    path: str | Path,
    *,
    allow_torn_tail: bool = False,
    on_error: Callable[[DataError], None] | None = None,
) -> Iterator[tuple[int, dict[str, Any]]]:
    """Yield `(line_or_row_number, raw row)` from a JSONL or Parquet file (`on_error`: report and skip bad lines)."""
    if is_parquet(path):
        import pyarrow.parquet as pq

        try:
            rows = pq.read_table(path).to_pylist()
        except (OSError, ValueError) as error:  # pyarrow's ArrowInvalid/ArrowIOError derive from these
            raise DataError(path, None, None, f"not a readable Parquet file: {error}") from None
        for number, row in enumerate(rows, start=1):
            yield number, _drop_arrow_nulls(row)
    else:
        yield from iter_jsonl(path, allow_torn_tail=allow_torn_tail, on_error=on_error, strict=True)


def row_to_environment(row: dict[str, Any], path: str | Path, line: int, *, check: bool = True) -> Environment:
    """Parse one raw row, raising `DataError` that names the file, line and offending field.

    With `check` (every command but `validate`, which lists all problems itself), a row that `validate` calls
    invalid is refused here with its first error, so every command rejects the same rows the same way."""
    for name in ("messages", *JSON_STRING_COLUMNS):
        if name not in row:
            raise DataError(path, line, name, "missing required field")
    for name in JSON_STRING_COLUMNS:
        if isinstance(row[name], str):
            try:
                json.loads(row[name])
            except json.JSONDecodeError as error:
                raise DataError(path, line, name, f"not valid JSON: {error.msg} (char {error.pos})") from None
    _check_unsolved_set(row.get("unsolved_set"), path, line)
    try:
        env = Environment.from_row(row)
    except (TypeError, ValueError, AttributeError) as error:
        raise DataError(path, line, None, f"malformed row: {error}") from None
    _check_shapes(env, path, line)
    if check:
        from ftrl.env.validate import validate_environment

        problem = next((i for i in validate_environment(env, parse_code=False) if not i.warning), None)
        if problem is not None:
            raise DataError(
                path, line, problem.field, f"{problem.message} (`ftrl validate {path}` lists every problem)"
            )
    return env


def _check_unsolved_set(value: Any, path: str | Path, line: int) -> None:
    """`unsolved_set` maps tool names to *lists* of gold strings: a string value (`{"tool": "772"}`) would be read
    as one answer per character, so it is refused, as is anything that is not a list of strings."""
    parsed = json.loads(value) if isinstance(value, str) else value
    if parsed is None:
        return
    if not isinstance(parsed, dict):
        raise DataError(
            path, line, "unsolved_set", f"must map tool names to lists of answers, got {type(parsed).__name__}"
        )
    for tool, answers in parsed.items():
        if not isinstance(answers, list) or not all(isinstance(answer, str) for answer in answers):
            shown = json.dumps(answers, ensure_ascii=False)
            raise DataError(
                path, line, "unsolved_set", f"answers of {tool!r} must be a list of strings, got {shown[:60]}"
            )


def _check_shapes(env: Environment, path: str | Path, line: int) -> None:
    if not all(isinstance(m, dict) and "role" in m for m in env.messages):
        raise DataError(path, line, "messages", "every message must be an object with a 'role'")
    if not all(isinstance(t, dict) for t in env.tools):
        raise DataError(path, line, "tools", "must be a list of tool schema objects")
    if not all(isinstance(k, str) and isinstance(v, str) for k, v in env.codes.items()):
        raise DataError(path, line, "codes", "must map tool names to python source strings")
    for tool, answers in env.unsolved_set.items():
        if not all(isinstance(a, str) for a in answers):
            raise DataError(path, line, "unsolved_set", f"answers of {tool!r} must be strings")


def read_envs(path: str | Path, *, allow_torn_tail: bool = False) -> list[Environment]:
    """All environments of a file; the first bad row raises a `DataError` with its location."""
    return [row_to_environment(row, path, line) for line, row in iter_rows(path, allow_torn_tail=allow_torn_tail)]


def write_envs(path: str | Path, envs: Iterable[Environment]) -> None:
    """Write a whole file atomically (a failure leaves any previous file untouched)."""
    rows = [env.to_row() for env in envs]
    if is_parquet(path):
        import pyarrow as pa
        import pyarrow.parquet as pq

        with atomic_path(path) as temporary:
            pq.write_table(pa.Table.from_pylist(rows), temporary)
    else:
        write_jsonl_atomic(path, rows)


class EnvAppender(JsonlAppender):
    """Append environments to a JSONL file row by row (resumable builds and collections)."""

    def write_env(self, env: Environment) -> None:
        self.write(env.to_row())


def to_hf_dataset(envs: Iterable[Environment]) -> datasets.Dataset:
    """Environments as a HF `datasets.Dataset` of reference rows (JSON-string columns stay strings)."""
    import datasets

    return datasets.Dataset.from_list([env.to_row() for env in envs])


def from_hf_dataset(dataset: Iterable[dict[str, Any]], name: str = "<dataset>") -> list[Environment]:
    """Environments from any iterable of reference rows, e.g. a HF `datasets.Dataset`."""
    return [row_to_environment(_drop_arrow_nulls(dict(row)), name, index) for index, row in enumerate(dataset, 1)]


def _drop_arrow_nulls(value: Any, key: str | None = None) -> Any:
    """Remove null-valued keys that Arrow adds when unifying structs; a message's `content` may be null."""
    if isinstance(value, dict):
        return {k: _drop_arrow_nulls(v, k) for k, v in value.items() if v is not None or k == "content"}
    if isinstance(value, list):
        return [_drop_arrow_nulls(item) for item in value]
    return value
