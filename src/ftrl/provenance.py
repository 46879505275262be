"""What produced an output, and who is writing it: the guard every resumable job puts around its `--out`.

Resumable jobs skip work they find done in their output. That is only right when the output was made by the same
job from the same inputs with the same result-changing settings, and when no second process appends to it at the
same time. `claim_output` checks both: it takes an exclusive `flock` on a lock file beside the output (a second
writer is refused, not merged) and compares a small record (job, content hashes of the inputs, settings) with the
one stored beside the output by the run that started it.
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import os
import shutil
from collections.abc import Iterable, Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from ftrl.jsonl import atomic_path

RECORD_NAME = "ftrl-run.json"  # inside an output folder; beside an output file it is `<file>.ftrl.json`
_CHUNK = 1 << 20


class OutputError(ValueError):
    """The output belongs to another run, is of unknown origin, or is being written by another process."""


def fingerprint(path: str | Path) -> str:
    """sha256 of a file's bytes, or of a folder's files (relative names and bytes, in sorted order)."""
    root = Path(path)
    digest = hashlib.sha256()
    files = sorted(p for p in root.rglob("*") if p.is_file()) if root.is_dir() else [root]
    for file in files:
        if root.is_dir():
            digest.update(str(file.relative_to(root)).encode("utf-8") + b"\0")
        try:
            with open(file, "rb") as handle:
                while chunk := handle.read(_CHUNK):
                    digest.update(chunk)
        except OSError as error:
            raise OutputError(f"{file}: cannot read ({error.strerror or error})") from None
    return digest.hexdigest()


def describe_model(model: str) -> Any:
    """A model's identity for a record: a local folder by its files' names, sizes and modification times (hashing
    gigabytes of weights on every resume would cost more than the job), anything else by its name."""
    folder = Path(model)
    if not folder.is_dir():
        return model
    files = {p.name: [p.stat().st_size, p.stat().st_mtime_ns] for p in sorted(folder.iterdir()) if p.is_file()}
    return {"path": str(folder.resolve()), "files": files}


def record_path(out: str | Path, folder: bool) -> Path:
    return Path(out) / RECORD_NAME if folder else Path(f"{out}.ftrl.json")


@contextmanager
def claim_output(
    out: str | Path,
    job: str,
    inputs: Mapping[str, str | Path | None],
    settings: Mapping[str, Any],
    *,
    folder: bool,
    overwrite: bool = False,
    sidecars: tuple[Path, ...] = (),
    reads: Iterable[str | Path | None] = (),
) -> Iterator[None]:
    """Hold `out` for this process while the block runs, after checking it is new or was produced by the same run.

    `inputs` are hashed by content (None entries are recorded as absent); `settings` must be JSON values. With
    `overwrite` an earlier output is deleted first (a folder only when it is one of ours or empty), together with
    its `sidecars` (files the job keeps beside a file output). `out` may not overlap `inputs` or `reads` (other
    paths the job reads but does not hash, such as a model folder): `refuse_overlap`, before anything is touched.
    """
    out = Path(out)
    refuse_overlap(out, [*inputs.values(), *reads])
    record = {
        "job": job,
        "inputs": {k: fingerprint(v) if v is not None else None for k, v in inputs.items()},
        "settings": dict(settings),
    }
    record = json.loads(json.dumps(record))  # tuples become lists, as they will when read back
    stored_at = record_path(out, folder)
    with lock_output(out, folder=folder) as lock_path:
        if overwrite:
            _clear(out, folder, stored_at, lock_path, sidecars)
        else:
            _check(out, folder, stored_at, lock_path, record)
        with atomic_path(stored_at) as temporary:
            temporary.write_text(json.dumps(record, indent=1, sort_keys=True), encoding="utf-8")
        yield


def refuse_overlap(out: str | Path, inputs: Iterable[str | Path | None], option: str = "--out") -> None:
    """Refuse an output that is, contains, or lies inside one of the job's `inputs` (paths resolved, symlinks and
    hard links included): writing it, or clearing it for `--overwrite`, would destroy what the job reads. Every
    command calls this before it creates, locks or deletes anything."""
    target = _resolved(out)
    for given in inputs:
        if given is None or str(given) == "":
            continue
        source = _resolved(given)
        if target == source or _same_file(target, source):
            relation = "is"
        elif target in source.parents:
            relation = "contains"
        elif source in target.parents:
            relation = "lies inside"
        else:
            continue
        raise OutputError(
            f"{option} {out} {relation} the input {given}"
            + (f" (resolved: {source})" if str(source) != str(given) else "")
            + "; a job never writes over what it reads, --overwrite included: choose another output path"
        )


def _resolved(path: str | Path) -> Path:
    return Path(os.path.abspath(Path(path).expanduser())).resolve(strict=False)


def _same_file(a: Path, b: Path) -> bool:
    try:
        return os.path.samefile(a, b)
    except OSError:
        return False


@contextmanager
def lock_output(out: str | Path, *, folder: bool) -> Iterator[Path]:
    """An exclusive, non-blocking `flock` on a lock file for `out` (inside a folder, beside a file); the kernel
    drops it when the process dies, so a killed job never leaves a stale lock. Yields the lock file's path."""
    out = Path(out)
    if out.exists() and out.is_dir() != folder:
        kinds = ("file", "folder") if folder else ("folder", "file")
        raise OutputError(f"{out} is a {kinds[0]}; this job writes a {kinds[1]}")
    lock_path = out / ".ftrl.lock" if folder else out.with_name(f".{out.name}.lock")
    lock_path.parent.mkdir(parents=True, exist_ok=True)
    with open(lock_path, "a", encoding="utf-8") as lock:
        try:
            fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise OutputError(
                f"{out} is being written by another ftrl process right now; wait for it to finish or use another --out"
            ) from None
        try:
            yield lock_path
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)


def _check(out: Path, folder: bool, stored_at: Path, lock_path: Path, record: dict[str, Any]) -> None:
    hint = "use --overwrite to replace it, or another --out"
    if not _has_content(out, folder, {stored_at.name, lock_path.name}):
        return  # nothing to resume (e.g. a run that failed before writing): the new record replaces the old
    try:
        stored = json.loads(stored_at.read_text(encoding="utf-8")) if stored_at.exists() else None
    except (OSError, ValueError):
        raise OutputError(f"{stored_at} is unreadable, so the origin of {out} is unknown; {hint}") from None
    if stored is None:
        job = record["job"]
        raise OutputError(f"{out} exists but was not written by `ftrl {job}` ({stored_at.name} missing); {hint}")
    if stored != record:
        raise OutputError(f"{out} was produced by a different run ({_differences(stored, record)}); {hint}")


def _differences(stored: Any, record: dict[str, Any]) -> str:
    if not isinstance(stored, dict):
        return "unreadable record"
    if stored.get("job") != record["job"]:
        return f"by `ftrl {stored.get('job')}`, not `ftrl {record['job']}`"
    changed = []
    for part in ("inputs", "settings"):
        old, new = stored.get(part) or {}, record[part]
        for key in sorted(set(old) | set(new)):
            if old.get(key) != new.get(key):
                changed.append(
                    f"{key}: {_short(old.get(key))} -> {_short(new.get(key))}"
                    if part == "settings"
                    else f"{key} has other content"
                )
    return "; ".join(changed) or "different record"


def _short(value: Any) -> str:
    text = json.dumps(value)
    return text if len(text) <= 60 else text[:57] + "..."


def _has_content(out: Path, folder: bool, ignore: set[str]) -> bool:
    if not out.exists():
        return False
    if not folder:
        return out.stat().st_size > 0
    return any(entry.name not in ignore for entry in out.iterdir())


def _clear(out: Path, folder: bool, stored_at: Path, lock_path: Path, sidecars: tuple[Path, ...]) -> None:
    if not out.exists():
        return
    if not folder:
        for path in (out, stored_at, *sidecars):
            path.unlink(missing_ok=True)
        return
    if not stored_at.exists() and _has_content(out, True, {lock_path.name}):
        raise OutputError(f"{out} is not an ftrl output folder (no {stored_at.name}); not deleting it for --overwrite")
    for entry in out.iterdir():
        if entry != lock_path:
            shutil.rmtree(entry) if entry.is_dir() and not entry.is_symlink() else entry.unlink()
