"""Parent side of the tool runtime: a pool of warm worker subprocesses and the episodes that use them.

Design notes:
- A worker never sends pickle; the parent only parses size-capped JSON frames and validates their shape, so a
  compromised worker can lie about its results but cannot run code here.
- Calls are batched per worker into one message; the worker answers each item as it finishes, which lets the
  parent apply a per-call deadline inside a batch. On a missed deadline or a dead worker the parent SIGKILLs it,
  starts a fresh one and carries on with the rest of the batch.
- Stateful episodes are pinned to one worker and opened there lazily (with their first call). The parent keeps a
  journal of the episode's completed calls; after a worker restart the state is re-created from the initial state
  and the journal is replayed (tools are deterministic), so state survives worker death.
- Stateless episodes cost nothing until their first call and run on whichever worker is free; all calls of one
  episode in a message go to one worker, which runs them in one fresh child process (see `_worker.py`).
- Each worker is a fork server: tool code only ever runs in a child forked for one environment, so nothing one
  environment does to modules, builtins or files reaches another.
"""

from __future__ import annotations

import fcntl
import functools
import hashlib
import itertools
import json
import os
import shutil
import subprocess
import sys
import tempfile
import threading
import time
import warnings
import weakref
from collections import deque
from collections.abc import Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from ftrl.runtime._worker import (
    ANSWER_FIELD,
    ARGUMENTS,
    CALL,
    CHECK,
    CLOSE,
    CODE_HASH,
    DOMAIN_KEY,
    DOMAINS,
    EPISODE,
    GET,
    HASH,
    INCOMPLETE,
    ITEMS,
    LAYERS,
    NAME,
    OP,
    OPEN,
    PROTOCOL_ERROR,
    REPLAY,
    SOURCES,
    STATE_JSON,
    STATE_KWARG,
    FrameError,
    error_message,
    failure_text,
    read_frame,
    send_frame,
    timeout_text,
)

_WORKER_SCRIPT = str(Path(__file__).with_name("_worker.py"))
_FOLDER_PREFIX = "ftrl-runtime-"
_OWNER_LOCK = ".owner.lock"  # flock'ed by the runtime's process for its lifetime; the kernel drops it when it dies
_CLAIM_GRACE_S = 10.0  # a folder this young may belong to a runtime that has not taken its lock yet


@dataclass(frozen=True, kw_only=True)
class RuntimeConfig:
    """Limits and pool size. Memory must also hold the live episode states a worker carries."""

    timeout_s: float = 10.0  # wall clock per call; SIGKILL after timeout_s + kill_grace_s
    memory_mb: int = 1024  # RLIMIT_AS per child process
    max_output_chars: int = 100_000  # longer tool output is truncated with a visible marker
    workers: int = 0  # 0 -> os.cpu_count()
    kill_grace_s: float = 0.5  # the in-worker timer gets this long to stop a call before the parent kills
    cpu_s: float = 3600.0  # RLIMIT_CPU per child process (one environment, or one stateful episode)
    file_mb: int = 64  # RLIMIT_FSIZE
    scratch_mb: int = 64  # size of the private scratch tmpfs (when a mount namespace is available)
    open_files: int = 64  # RLIMIT_NOFILE
    setup_timeout_s: float = 60.0  # worker start-up and shipping/decoding of initial states
    max_message_mb: int = 512  # larger frames from a worker are treated as a protocol violation


class WorkerFailure(Exception):
    """The worker missed a deadline, died, or broke the protocol; it has been killed."""

    def __init__(self, text: str, timed_out: bool = False) -> None:
        super().__init__(text)
        self.timed_out = timed_out


class _Job:
    __slots__ = ("episode", "op", "name", "arguments", "result", "error")

    def __init__(self, episode: Episode, op: str, name: str = "", arguments: Any = None) -> None:
        self.episode, self.op, self.name, self.arguments = episode, op, name, arguments
        self.result: Any = None
        self.error: Exception | None = None


class _Slot:
    """One worker process (replaced on failure; `generation` counts replacements) and what it already holds."""

    def __init__(self, config: RuntimeConfig, root: str, index: int) -> None:
        self.config, self.root, self.index = config, root, index
        self.lock = threading.Lock()
        self.pending_close: deque[str] = deque()
        self.pinned = 0
        self.generation = 0
        self.layers: list[str] = []
        self.process: subprocess.Popen | None = None
        self._spawn()

    # ---- process lifecycle
    def _spawn(self) -> None:
        self.generation += 1
        self.scratch = tempfile.mkdtemp(prefix=f"w{self.index}-", dir=self.root)
        to_worker_r, self.to_worker = os.pipe()
        self.from_worker, from_worker_w = os.pipe()
        settings = {**asdict(self.config), "scratch": self.scratch}
        self.process = subprocess.Popen(
            [sys.executable, "-I", "-S", _WORKER_SCRIPT, str(to_worker_r), str(from_worker_w), json.dumps(settings)],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            pass_fds=(to_worker_r, from_worker_w),
            env={"PATH": os.defpath, "TMPDIR": self.scratch, "HOME": self.scratch},
        )
        os.close(to_worker_r)
        os.close(from_worker_w)
        os.set_blocking(self.to_worker, False)
        os.set_blocking(self.from_worker, False)
        self.buffer = bytearray()
        self.sources: set[str] = set()
        self.domains: set[str] = set()
        self.ready = False

    def kill(self) -> str:
        """Stop the process for good; returns how it ended, for error texts."""
        if self.process is None:
            return "not running"
        self.process.kill()
        code = self.process.wait()
        os.close(self.to_worker)
        os.close(self.from_worker)
        shutil.rmtree(self.scratch, ignore_errors=True)
        self.process = None
        return f"signal {-code}" if code < 0 else f"exit code {code}"

    def restart(self) -> str:
        ended = self.kill()
        self._spawn()
        return ended

    # ---- framing with deadlines
    def _send(self, message: dict[str, Any], timeout: float) -> None:
        try:
            send_frame(self.to_worker, message, timeout)
        except BrokenPipeError:
            raise WorkerFailure("worker exited") from None
        except TimeoutError:
            raise WorkerFailure("timed out receiving a request", timed_out=True) from None

    def _receive(self, timeout: float) -> dict[str, Any]:
        """One response message, or WorkerFailure (timed_out when the deadline passed)."""
        try:
            return read_frame(self.from_worker, self.buffer, self.config.max_message_mb * 1024 * 1024, timeout)
        except FrameError as error:
            raise WorkerFailure(str(error)) from None
        except TimeoutError:
            raise WorkerFailure("timed out", timed_out=True) from None
        except EOFError:
            raise WorkerFailure("worker exited") from None

    def ensure_ready(self) -> None:
        if self.ready:
            return
        try:
            hello = self._receive(self.config.setup_timeout_s)
        except WorkerFailure as failure:
            ended = self.kill()
            raise RuntimeError(f"tool worker failed to start ({failure}, {ended})") from None
        self.layers = [str(layer) for layer in hello.get(LAYERS, [])]
        self.ready = True
        if "view" not in self.layers or "pidns" not in self.layers:
            tool_uid = 65534 if "uid" in self.layers else os.geteuid()
            _warn_weak_isolation(os.geteuid() == 0, tool_uid, "view" in self.layers, "pidns" in self.layers)

    # ---- running jobs
    def run(self, jobs: list[_Job]) -> None:
        """Run jobs in order (caller holds `lock`); failures become per-job results, never exceptions."""
        start, fresh_retry = 0, True
        while start < len(jobs):
            if self.process is None:
                self._spawn()
            elif self.process.poll() is not None:
                self.restart()  # died while idle (killed from outside): not the fault of these jobs
            self.ensure_ready()
            message, expected = self._compose(jobs, start)
            try:
                self._send(message, self.config.setup_timeout_s)
            except WorkerFailure:
                self.restart()  # it died while idle: not the fault of these jobs, retry once
                if not fresh_retry:
                    raise RuntimeError("tool worker keeps dying before it reads a request") from None
                fresh_retry = False
                continue
            start = self._collect(jobs, expected, start)

    def _collect(self, jobs: list[_Job], expected: list[tuple[int, str, float]], start: int) -> int:
        """Read the answers to one message; returns the index of the first job still to run."""
        for index, kind, timeout in expected:
            job = jobs[index]
            try:
                response = self._receive(timeout)
                if PROTOCOL_ERROR in response:
                    raise WorkerFailure(f"protocol error: {response[PROTOCOL_ERROR]}")
                self._apply(job, kind, response)
            except WorkerFailure as failure:
                ended = self.restart()
                self._fail(job, failure, ended)
                return index + 1
        return len(jobs)

    def _apply(self, job: _Job, kind: str, response: dict[str, Any]) -> None:
        if kind == OPEN:
            return
        field = ANSWER_FIELD[kind]
        if field not in response:
            raise WorkerFailure("sent a malformed message")
        value = response[field]
        if kind == CALL:
            if not isinstance(value, str):
                raise WorkerFailure("sent a malformed message")
            episode = job.episode
            if episode.stateful and not response.get(INCOMPLETE):
                episode._journal.append((job.name, episode._hashes.get(job.name), job.arguments))
        elif kind in (CHECK, HASH) and not (value is None and kind == CHECK) and not isinstance(value, str):
            raise WorkerFailure("sent a malformed message")
        job.result = value

    def _fail(self, job: _Job, failure: WorkerFailure, ended: str) -> None:
        if job.op in (CALL, CHECK):
            if failure.timed_out:
                text = timeout_text(job.name, self.config.timeout_s)
            else:
                text = failure_text(str(failure), ended, self.config.memory_mb)
            job.result = error_message(job.name, text) if job.op == CALL else text
        else:
            job.error = RuntimeError(f"tool worker failed: {failure} ({ended})")

    def _compose(self, jobs: list[_Job], start: int) -> tuple[dict[str, Any], list[tuple[int, str, float]]]:
        items: list[dict[str, Any]] = []
        expected: list[tuple[int, str, float]] = []
        sources: dict[str, str] = {}
        defs: dict[str, str] = {}
        call_timeout = self.config.timeout_s + self.config.kill_grace_s
        while self.pending_close:
            items.append({OP: CLOSE, EPISODE: self.pending_close.popleft()})
        for index in range(start, len(jobs)):
            job = jobs[index]
            episode = job.episode
            if episode.stateful and episode._generation != self.generation:
                runtime = episode._runtime
                if episode._key is not None and episode._key not in self.domains:
                    defs[episode._key] = runtime._domains[episode._key]
                    self.domains.add(episode._key)
                for name, _, _ in episode._journal:
                    self._add_source(episode, name, sources)
                replay = [list(entry) for entry in episode._journal]
                items.append(
                    {
                        OP: OPEN,
                        EPISODE: episode.id,
                        DOMAIN_KEY: episode._key,
                        STATE_JSON: episode._state_json,
                        STATE_KWARG: episode._state_kwarg,
                        REPLAY: replay,
                    }
                )
                setup = self.config.setup_timeout_s + len(replay) * call_timeout
                expected.append((index, OPEN, setup))
                episode._generation = self.generation
            if job.op in (CALL, CHECK):
                code_hash = self._add_source(episode, job.name, sources)
                # one process per EPISODE (environment)
                item = {OP: job.op, NAME: job.name, CODE_HASH: code_hash, EPISODE: episode.id}
                if job.op == CALL:
                    item[ARGUMENTS] = job.arguments
                items.append(item)
                expected.append((index, job.op, call_timeout))
            else:
                items.append({OP: job.op, EPISODE: episode.id})
                expected.append((index, job.op, self.config.setup_timeout_s))
        if defs and expected:
            first_index, first_kind, first_timeout = expected[0]
            expected[0] = (first_index, first_kind, first_timeout + self.config.setup_timeout_s)
        return {ITEMS: items, SOURCES: sources, DOMAINS: defs}, expected

    def _add_source(self, episode: Episode, name: str, sources: dict[str, str]) -> str | None:
        code_hash = episode._hashes.get(name)
        if code_hash is not None and code_hash not in self.sources:
            sources[code_hash] = episode._codes[name]
            self.sources.add(code_hash)
        return code_hash


class Episode:
    """One rollout's view of the runtime: its tools and, optionally, its own copy of a state."""

    def __init__(
        self,
        runtime: ToolRuntime,
        codes: Mapping[str, str],
        slot: _Slot | None,
        key: str | None,
        state_json: str | None,
        state_kwarg: str,
    ) -> None:
        self.id = f"e{next(runtime._ids)}"
        self._runtime = runtime
        self._codes = dict(codes)
        self._hashes = {name: hashlib.sha1(code.encode("utf-8")).hexdigest() for name, code in self._codes.items()}
        self._slot = slot
        self._key = key
        self._state_json = state_json
        self._state_kwarg = state_kwarg
        self._journal: list[tuple[str, str | None, Any]] = []
        self._generation = 0  # the slot generation that holds this episode's state (0: none yet)
        self._finalizer = None
        if slot is not None:
            self._finalizer = weakref.finalize(self, _release, slot, self.id)

    @property
    def stateful(self) -> bool:
        return self._slot is not None

    def call(self, name: str, arguments: str | Mapping[str, Any]) -> str:
        """Run one tool call; returns the tool message content (errors included, never raises for tool faults)."""
        return self.call_many([(name, arguments)])[0]

    def call_many(self, calls: Sequence[tuple[str, str | Mapping[str, Any]]]) -> list[str]:
        """Run calls in order in one round trip."""
        jobs = [_Job(self, CALL, name, _plain_arguments(arguments)) for name, arguments in calls]
        self._runtime._run_jobs(jobs)
        return [job.result for job in jobs]

    def state(self) -> Any:
        """The episode's current state, read back from the worker as JSON."""
        return self._read(GET)

    def state_hash(self) -> str:
        """sha256 of the state's canonical JSON, computed in the worker (no multi-MB transfer)."""
        return self._read(HASH)

    def _read(self, op: str) -> Any:
        if not self.stateful:
            return None if op == GET else _null_digest()
        job = _Job(self, op)
        self._runtime._run_jobs([job])
        if job.error is not None:
            raise job.error
        return job.result

    def close(self) -> None:
        """Free the episode's state in its worker (sent along with that worker's next message)."""
        if self._finalizer is not None:
            self._finalizer()

    def __enter__(self) -> Episode:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _release(slot: _Slot, episode_id: str) -> None:
    slot.pending_close.append(episode_id)
    slot.pinned -= 1


@functools.cache
def _warn_weak_isolation(root: bool, tool_uid: int, view: bool, pid_namespaces: bool) -> None:
    """Said once per process: the fallback when the OS grants no mount or PID namespaces (see `_worker.py`, layers
    view and pidns)."""
    why = "the kernel refused the namespaces" if root else "this kernel refuses unprivileged user namespaces"
    lost = []
    if not view:
        lost.append(
            f"cannot hide the user's home, the project, the working directory and other files from tool code: "
            f"generated tool code can read whatever uid {tool_uid} may read"
        )
    if not pid_namespaces:
        lost.append(f"cannot hide other processes of uid {tool_uid} from tool code, nor stop it signalling them")
    warnings.warn(f"ftrl's tool runtime {' and '.join(lost)} ({why})", RuntimeWarning, stacklevel=2)


def _null_digest() -> str:
    return hashlib.sha256(b"null").hexdigest()


def _plain_arguments(arguments: str | Mapping[str, Any]) -> Any:
    return arguments if isinstance(arguments, str) else dict(arguments)


def _claim_folder() -> tuple[str, int]:
    """A new temp folder for this runtime's workers and the fd of its lock, held for as long as this process lives.
    Folders that runtimes killed earlier left behind (kill -9 included) are removed first."""
    try:
        remove_abandoned_folders(tempfile.gettempdir())
    except OSError:  # an unreadable temp folder: nothing to clean, and mkdtemp below says what is wrong
        pass
    root = tempfile.mkdtemp(prefix=_FOLDER_PREFIX)
    os.chmod(root, 0o755)  # workers drop to an unprivileged uid and must reach their scratch dirs
    lock = os.open(os.path.join(root, _OWNER_LOCK), os.O_CREAT | os.O_WRONLY | os.O_CLOEXEC, 0o600)
    fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
    return root, lock


def _release_folder(root: str, lock: int) -> None:
    shutil.rmtree(root, ignore_errors=True)
    os.close(lock)


def remove_abandoned_folders(temp: str) -> list[str]:
    """Remove this user's `ftrl-runtime-*` folders in `temp` whose lock no process holds (their runtime died without
    cleaning up); returns them. A folder without a lock (made by an older ftrl, which may still be running) is left."""
    removed = []
    uid = os.geteuid()
    with os.scandir(temp) as entries:
        candidates = [e.path for e in entries if e.name.startswith(_FOLDER_PREFIX) and e.is_dir(follow_symlinks=False)]
    for folder in candidates:
        try:
            lock = os.open(os.path.join(folder, _OWNER_LOCK), os.O_RDONLY | os.O_CLOEXEC | os.O_NOFOLLOW)
        except OSError:
            continue
        try:
            status = os.fstat(lock)
            if status.st_uid != uid or time.time() - status.st_mtime < _CLAIM_GRACE_S:
                continue
            try:
                fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except OSError:
                continue  # its runtime is alive
            shutil.rmtree(folder, ignore_errors=True)
            removed.append(folder)
        finally:
            os.close(lock)
    return removed


class ToolRuntime:
    """Runs tool code in warm, hardened worker subprocesses (see `_worker.py` for the isolation layers)."""

    def __init__(self, config: RuntimeConfig = RuntimeConfig()) -> None:
        self.config = config
        self._root, lock = _claim_folder()
        self._release_folder = weakref.finalize(self, _release_folder, self._root, lock)
        count = config.workers or os.cpu_count() or 1
        self._slots = [_Slot(config, self._root, index) for index in range(count)]
        self._domains: dict[str, str] = {}
        self._ids = itertools.count()
        self._turn = itertools.count()
        self._lock = threading.Lock()
        self._pool = ThreadPoolExecutor(max_workers=count, thread_name_prefix="ftrl-runtime") if count > 1 else None
        self._closed = False

    @property
    def layers(self) -> list[str]:
        """Isolation layers active in the workers (e.g. netns, mountns, uid, rlimits, audit, timer)."""
        slot = self._slots[0]
        with slot.lock:
            slot.ensure_ready()
            return list(slot.layers)

    def episode(
        self,
        codes: Mapping[str, str],
        state: Any = None,
        *,
        state_kwarg: str = "data",
        state_key: str | None = None,
    ) -> Episode:
        """A new episode. `state_key` names a shared initial state shipped to each worker once and cloned there."""
        if state is None and state_key is None:
            return Episode(self, codes, None, None, None, state_kwarg)
        state_json = None
        with self._lock:
            if state_key is not None and state_key not in self._domains:
                if state is None:
                    raise ValueError(f"state_key {state_key!r} is unknown: pass its initial state on first use")
                self._domains[state_key] = json.dumps(state)
            elif state_key is None:
                state_json = json.dumps(state)
            slot = min(self._slots, key=lambda s: s.pinned)
            slot.pinned += 1
        return Episode(self, codes, slot, state_key, state_json, state_kwarg)

    def check(self, codes: Mapping[str, str]) -> dict[str, str | None]:
        """Exec each tool's code in a worker: None if it defines a callable of that name, else an error text."""
        return self.check_many([codes])[0]

    def check_many(self, environments: Sequence[Mapping[str, str]]) -> list[dict[str, str | None]]:
        """`check` for many environments at once: one message per worker, all workers in parallel, and each
        environment's codes loaded together in a process of their own (as its calls would run)."""
        episodes = [Episode(self, codes, None, None, None, "data") for codes in environments]
        groups = [[_Job(episode, CHECK, name) for name in episode._codes] for episode in episodes]
        self._run_jobs([job for group in groups for job in group])
        return [{job.name: job.result for job in group} for group in groups]

    def call_batch(self, requests: Sequence[tuple[Episode, str, str | Mapping[str, Any]]]) -> list[str]:
        """Many calls for many episodes, dispatched to all workers concurrently; results in request order."""
        jobs = [_Job(episode, CALL, name, _plain_arguments(arguments)) for episode, name, arguments in requests]
        self._run_jobs(jobs)
        return [job.result for job in jobs]

    def _run_jobs(self, jobs: list[_Job]) -> None:
        if self._closed:
            raise RuntimeError("ToolRuntime is closed")
        if not jobs:
            return
        groups: dict[int, list[_Job]] = {}
        loads = [0] * len(self._slots)
        for job in jobs:
            if job.episode._slot is not None:
                groups.setdefault(job.episode._slot.index, []).append(job)
                loads[job.episode._slot.index] += 1
        free = [job for job in jobs if job.episode._slot is None]
        if free and not groups:
            if len(free) <= 1 or self._pool is None:
                self._run_on_free_slot(free)
                return
        by_episode: dict[int, list[_Job]] = {}
        for job in free:  # an environment's calls stay together: one child process serves them in order
            by_episode.setdefault(id(job.episode), []).append(job)
        for episode_jobs in by_episode.values():
            index = min(range(len(loads)), key=loads.__getitem__)
            groups.setdefault(index, []).extend(episode_jobs)
            loads[index] += len(episode_jobs)
        if len(groups) == 1 or self._pool is None:
            for index, group in groups.items():
                self._run_on(self._slots[index], group)
            return
        futures = [self._pool.submit(self._run_on, self._slots[index], group) for index, group in groups.items()]
        for future in futures:
            future.result()

    def _run_on(self, slot: _Slot, jobs: list[_Job]) -> None:
        with slot.lock:
            slot.run(jobs)

    def _run_on_free_slot(self, jobs: list[_Job]) -> None:
        """Stateless work goes to the first idle worker, else waits its turn on one."""
        count = len(self._slots)
        first = next(self._turn) % count
        for offset in range(count):
            slot = self._slots[(first + offset) % count]
            if slot.lock.acquire(blocking=False):
                break
        else:
            slot = self._slots[first]
            slot.lock.acquire()
        try:
            slot.run(jobs)
        finally:
            slot.lock.release()

    def close(self) -> None:
        """Kill all workers and remove their scratch dirs."""
        if self._closed:
            return
        self._closed = True
        if self._pool is not None:
            self._pool.shutdown(wait=True)
        for slot in self._slots:
            with slot.lock:
                slot.kill()
        self._release_folder()

    def __enter__(self) -> ToolRuntime:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
