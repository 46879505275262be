"""JSON Lines reading and crash-safe appending, shared by every ftrl file that is written row by row.

Readers report the file and line of bad input; appenders flush every row and repair a torn last line left
by a killed process, so a resumed job neither loses nor duplicates rows. Files and folders written whole go
through `atomic_path`, the one atomic writer of ftrl.
"""

from __future__ import annotations

import json
import os
import shutil
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Self, TextIO


class DataError(ValueError):
    """Bad input data, located by file, line (1-based; row for Parquet) and field."""

    def __init__(self, path: str | Path, line: int | None, field: str | None, message: str):
        self.path, self.line, self.field, self.message = str(path), line, field, message
        where = self.path + (f":{line}" if line is not None else "")
        super().__init__(f"{where}: {'field ' + repr(field) + ': ' if field else ''}{message}")


def iter_jsonl(
    path: str | Path,
    *,
    allow_torn_tail: bool = False,
    on_error: Callable[[DataError], None] | None = None,
    strict: bool = False,
) -> Iterator[tuple[int, dict[str, Any]]]:
    """Yield `(line_number, object)` for each non-blank line; raise `DataError` naming the bad line.

    With `allow_torn_tail`, an unparsable *last* line without a trailing newline (a write cut short by a
    crash) is skipped instead of raising. With `on_error`, bad lines are reported to it and skipped. With
    `strict`, what Python's json accepts but JSON and UTF-8 do not is a bad line too: `NaN`, `Infinity`,
    `-Infinity`, and escapes of lone surrogates (`"\\ud800"`, text no file or request can carry).
    """
    for number, line in enumerate(_stream_lines(path), start=1):
        if not line.strip():
            continue
        try:
            text = line.decode("utf-8")
        except UnicodeDecodeError as error:
            message = f"not UTF-8 text (byte {error.start + 1} of the line): is it a binary file?"
            _fail(DataError(path, number, None, message), on_error)
            continue
        try:
            value = json.loads(text, parse_constant=_refuse_constant) if strict else json.loads(text)
        except _NonFinite as error:
            _fail(
                DataError(path, number, None, f"{error} is not a JSON number (NaN and Infinity are refused)"), on_error
            )
            continue
        except json.JSONDecodeError as error:
            if allow_torn_tail and not line.endswith(b"\n"):  # only the last line can lack its newline
                return
            _fail(DataError(path, number, None, f"invalid JSON: {error.msg} (column {error.colno})"), on_error)
            continue
        if not isinstance(value, dict):
            _fail(DataError(path, number, None, f"expected a JSON object, got {type(value).__name__}"), on_error)
            continue
        if strict and ("\\ud" in text or "\\uD" in text) and (surrogate := _lone_surrogate(value)):
            _fail(DataError(path, number, None, f"not valid Unicode: a lone surrogate {surrogate}"), on_error)
            continue
        yield number, value


def require_key(path: str | Path, line: int, row: dict[str, Any], key: str, kind: type, writer: str) -> Any:
    """`row[key]` of a file ftrl wrote itself (resumed outputs), or a `DataError` naming file, line and field: a
    line without it was not written by `writer` (added by hand or by another tool)."""
    value = row.get(key)
    if not isinstance(value, kind) or isinstance(value, bool):
        found = "missing" if key not in row else f"not a {kind.__name__} ({value!r:.40})"
        raise DataError(
            path,
            line,
            key,
            f"{found}: this line was not written by {writer}; remove it, or start over with --overwrite",
        )
    return value


def _stream_lines(path: str | Path) -> Iterator[bytes]:
    """A text file's lines as bytes, one at a time (memory bounded by the longest line; a UTF-8 byte-order mark
    dropped); a missing file, a folder or an unreadable file is a `DataError` naming it."""
    try:
        handle = open(path, "rb")
    except IsADirectoryError:
        raise DataError(path, None, None, "is a folder, expected a file") from None
    except FileNotFoundError:
        raise DataError(path, None, None, "no such file") from None
    except OSError as error:
        raise DataError(path, None, None, f"cannot read: {error.strerror or error}") from None
    with handle:
        first = True
        while True:
            try:
                line = handle.readline()
            except OSError as error:
                raise DataError(path, None, None, f"cannot read: {error.strerror or error}") from None
            if not line:
                return
            if first and line.startswith(b"\xef\xbb\xbf"):
                line = line[3:]
            first = False
            yield line


def read_lines(path: str | Path) -> list[bytes]:
    """A text file's lines as bytes (a UTF-8 byte-order mark dropped); a missing file, a folder or an unreadable
    file is a `DataError` naming it, never an OSError traceback."""
    try:
        with open(path, "rb") as handle:
            data = handle.read()
    except IsADirectoryError:
        raise DataError(path, None, None, "is a folder, expected a file") from None
    except FileNotFoundError:
        raise DataError(path, None, None, "no such file") from None
    except OSError as error:
        raise DataError(path, None, None, f"cannot read: {error.strerror or error}") from None
    if data.startswith(b"\xef\xbb\xbf"):
        data = data[3:]
    return data.splitlines(keepends=True)


def read_records(path: str | Path, what: str) -> list[tuple[int, dict[str, Any]]]:
    """`(line or item number, object)` of a JSON list or a JSONL file, told apart by content (public releases
    use both, under either suffix); anything else (NaN and Infinity included), or no records at all, is a
    `DataError` that says what `what` file was expected."""
    lines = read_lines(path)
    if next((line.strip() for line in lines if line.strip()), b"")[:1] == b"[":
        try:
            data = json.loads(b"".join(lines).decode("utf-8"), parse_constant=_refuse_constant)
        except (ValueError, UnicodeDecodeError) as error:
            raise DataError(path, None, None, f"not a JSON list of {what} records: {error}") from None
        records = list(enumerate(data, start=1))
    else:
        records = list(iter_jsonl(path, strict=True))
    if not records:
        raise DataError(path, None, None, f"no {what} records in it (an empty file)")
    for number, record in records:
        if not isinstance(record, dict):
            raise DataError(path, number, None, f"a {what} record must be an object, got {type(record).__name__}")
    return records


def _lone_surrogate(value: Any) -> str | None:
    """The first lone surrogate in a parsed JSON value, escaped for printing, or None."""
    text = json.dumps(value, ensure_ascii=False)
    try:
        text.encode("utf-8")
    except UnicodeEncodeError as error:
        return ascii(text[error.start])
    return None


class _NonFinite(ValueError):
    pass


def _refuse_constant(name: str) -> Any:
    raise _NonFinite(name)


def _fail(error: DataError, on_error: Callable[[DataError], None] | None) -> None:
    if on_error is None:
        raise error
    on_error(error)


def repair_torn_tail(path: str | Path) -> None:
    """Cut a partial last line (no trailing newline) left by a killed writer, keeping every complete row."""
    file = Path(path)
    if not file.exists() or file.stat().st_size == 0:
        return
    with open(file, "rb+") as handle:
        handle.seek(-1, os.SEEK_END)
        if handle.read(1) == b"\n":
            return
        data = file.read_bytes()
        handle.truncate(data.rfind(b"\n") + 1)


def located(error: OSError, path: str | Path) -> OSError:
    """`error` with `path` as its file name when it has none (a failed `write` or `flush`, such as a full disk,
    names no file by itself), so the one-line message says which file could not be written."""
    if error.filename is None:
        return type(error)(error.errno, f"{error.strerror or error} (while writing)", str(path))
    return error


class JsonlAppender:
    """Append rows to a JSONL file, one flushed line each; safe to reopen after a crash.

    A row is serialised whole before anything is written, so a row that cannot be (NaN with `allow_nan=False`,
    text that is not valid Unicode) raises a `ValueError` naming the file and leaves the file as it was.
    """

    def __init__(self, path: str | Path, *, fsync: bool = False, allow_nan: bool = True):
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        repair_torn_tail(self.path)
        self._fsync = fsync
        self._allow_nan = allow_nan
        self._handle: TextIO = open(self.path, "a", encoding="utf-8")

    def write(self, row: dict[str, Any]) -> None:
        try:
            line = json.dumps(row, ensure_ascii=False, allow_nan=self._allow_nan) + "\n"
            line.encode("utf-8")
        except (ValueError, UnicodeEncodeError) as error:
            raise ValueError(f"{self.path}: a row cannot be written ({error}); nothing of it was written") from None
        try:
            self._handle.write(line)
            self._handle.flush()
            if self._fsync:
                os.fsync(self._handle.fileno())
        except OSError as error:
            raise located(error, self.path) from None

    def close(self) -> None:
        try:
            self._handle.close()
        except OSError as error:
            raise located(error, self.path) from None

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def write_jsonl_atomic(path: str | Path, rows: list[dict[str, Any]]) -> None:
    """Write a whole file via a temporary sibling and rename, so a failure never leaves a half file."""
    try:
        with atomic_path(path) as temporary, open(temporary, "w", encoding="utf-8") as handle:
            for row in rows:
                handle.write(json.dumps(row, ensure_ascii=False) + "\n")
    except OSError as error:
        raise located(error, path) from None


def write_text_atomic(path: str | Path, text: str) -> None:
    """Write a whole text file atomically: a failure (a full disk) leaves the old file or none, never an empty or
    half one, and the error names `path`."""
    try:
        with atomic_path(path) as temporary:
            temporary.write_text(text, encoding="utf-8")
    except OSError as error:
        raise OSError(error.errno, f"{error.strerror or error} (while writing)", str(path)) from None


@contextmanager
def atomic_path(target: str | Path) -> Iterator[Path]:
    """A temporary sibling path that replaces `target` only if the block succeeds; removed on failure.

    The one way ftrl writes a whole file or folder: the block makes a file or a folder at the path it is given
    (hidden, unique per call, so concurrent writers never share one). A folder replaces an existing `target`
    folder by removing it first: a crash in between leaves no `target`, never a half-written one.
    """
    target = Path(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    temporary = target.with_name(f".{target.name}.{os.getpid()}-{uuid.uuid4().hex[:8]}.tmp")
    try:
        yield temporary
        if temporary.is_dir() and target.is_dir():
            shutil.rmtree(target)
        os.replace(temporary, target)
    finally:
        if temporary.is_dir():
            shutil.rmtree(temporary, ignore_errors=True)
        else:
            temporary.unlink(missing_ok=True)
