"""Tool worker: runs LLM-generated tool code inside a hardened subprocess.

Started by `ToolRuntime` as `python -I -S _worker.py IN_FD OUT_FD SETTINGS_JSON`; stdlib only. Messages are
length-prefixed JSON on two dedicated pipes (fds 0-2 point at /dev/null), so nothing a tool prints or writes to
stdout can reach the protocol. The parent also imports this file for the reference result/error rules, which is
why importing it has no side effects.

Isolation layers, applied in `_harden` before any tool code runs (each is best effort; active ones are reported
to the parent in the ready message):
  netns      unshare(CLONE_NEWNET): no interfaces except a down loopback
  mountns    unshare(CLONE_NEWNS): scratch becomes a private size-capped tmpfs, every other mount read-only
  uid        drop root to 65534 (so RLIMIT_NPROC=0 applies: no fork, no threads); skipped when the stdlib would
             become unreadable (e.g. Python installed under a private /root)
  rlimits    address space, CPU seconds (lifetime backstop), file size, no core dumps, open files, processes
  audit      sys.addaudithook (irremovable): blocks process creation, signals, sockets, ctypes, gc introspection,
             rlimit changes, chdir, links, and file writes/removals outside the scratch dir
  timer      SIGALRM raises `_Timeout` in Python code; the parent SIGKILLs the worker if that does not stop it
"""

from __future__ import annotations

import gc
import hashlib
import io
import json
import os
import signal
import sys
from collections import OrderedDict
from typing import Any

_HEADER = 4
_CODE_CACHE = 4096
_RETIRE_FRACTION = 0.5
_NOBODY = 65534


def format_result(value: Any) -> str:
    """Reference conversion: exact dict/list -> JSON (non-ASCII kept), str as is, anything else -> str()."""
    if type(value) == dict or type(value) == list:  # noqa: E721 - the reference checks exact types
        return json.dumps(value, ensure_ascii=False)
    if isinstance(value, str):
        return value
    return str(value)


def error_message(name: str, error: BaseException | str) -> str:
    """Reference tool-message text for any failure (its spelling of "occured" is what the model saw)."""
    return f"an error occured when call {name}: {error}"


def timeout_text(name: str, seconds: float) -> str:
    """The str(e) of a timed-out call, shared by the in-worker timer and the parent's hard kill."""
    return f"Function {name} timed out after {seconds:f} seconds."


def state_digest(state: Any) -> str:
    """sha256 of canonical JSON (sorted keys), so states compare across processes."""
    return hashlib.sha256(json.dumps(state, sort_keys=True, ensure_ascii=False).encode("utf-8")).hexdigest()


def truncate(text: str, limit: int) -> str:
    if len(text) <= limit:
        return text
    return f"{text[:limit]}\n...[truncated {len(text) - limit} chars]"


class _Timeout(BaseException):
    """Raised by SIGALRM; a BaseException so a tool's `except Exception` cannot swallow it."""


class _Sink(io.TextIOBase):
    """Discards tool prints: bounded memory, and nothing reaches a pipe."""

    def writable(self) -> bool:
        return True

    def write(self, text: str) -> int:
        return len(text)


# ---------------------------------------------------------------------------------------------------- hardening


def _harden(scratch: str, settings: dict[str, Any]) -> list[str]:
    import resource

    layers: list[str] = []
    libc = _libc()
    if libc is not None and libc.unshare(0x40000000) == 0:  # CLONE_NEWNET
        layers.append("netns")
    root = os.geteuid() == 0
    if libc is not None and root and _private_mounts(libc, scratch, settings["scratch_mb"]):
        layers.append("mountns")
    if root and _can_run_as(_NOBODY):
        os.chown(scratch, _NOBODY, _NOBODY)
        os.setgroups([])
        os.setgid(_NOBODY)
        os.setuid(_NOBODY)
        layers.append("uid")
    os.chdir(scratch)
    memory = settings["memory_mb"] * 1024 * 1024
    cpu = int(settings["cpu_s"])
    for limit, value in (
        (resource.RLIMIT_AS, (memory, memory)),
        (resource.RLIMIT_CPU, (cpu, cpu + 5)),
        (resource.RLIMIT_FSIZE, (settings["file_mb"] * 1024 * 1024,) * 2),
        (resource.RLIMIT_CORE, (0, 0)),
        (resource.RLIMIT_NOFILE, (settings["open_files"],) * 2),
        (resource.RLIMIT_NPROC, (0, 0)),
    ):
        resource.setrlimit(limit, value)
    layers.append("rlimits")
    for name in [m for m in sys.modules if m == "ctypes" or m.startswith(("ctypes.", "_ctypes"))]:
        del sys.modules[name]
    sys.addaudithook(_make_hook(scratch))
    layers.append("audit")
    return layers


def _can_run_as(uid: int) -> bool:
    """Whether the stdlib stays importable as `uid` (e.g. not when Python lives under a private /root)."""
    os.seteuid(uid)
    try:
        os.listdir(os.path.dirname(os.__file__))
        return True
    except OSError:
        return False
    finally:
        os.seteuid(0)


def _libc() -> Any:
    try:
        import ctypes

        return ctypes.CDLL(None, use_errno=True)
    except (ImportError, OSError):
        return None


def _private_mounts(libc: Any, scratch: str, size_mb: int) -> bool:
    """Own mount namespace: scratch becomes a private size-capped tmpfs and every other mount read-only."""
    ms_rdonly, ms_nosuid, ms_nodev, ms_remount, ms_bind, ms_rec, ms_private = 1, 2, 4, 32, 4096, 16384, 1 << 18
    if libc.unshare(0x00020000) != 0 or libc.mount(b"none", b"/", None, ms_rec | ms_private, None) != 0:
        return False
    options = f"size={size_mb}m,mode=0700,uid={_NOBODY},gid={_NOBODY}".encode()
    if libc.mount(b"tmpfs", scratch.encode(), b"tmpfs", ms_nosuid | ms_nodev, options) != 0:
        return False
    with open("/proc/self/mountinfo", encoding="utf-8") as table:
        points = [line.split()[4] for line in table]
    for point in points:
        if point != scratch and "\\" not in point:
            libc.mount(None, point.encode(), None, ms_remount | ms_bind | ms_rdonly, None)
    return True


_BLOCKED_EVENTS = frozenset(
    {
        "os.fork", "os.forkpty", "os.posix_spawn", "os.exec", "os.spawn", "os.system", "os.kill", "os.killpg",
        "os.chdir", "os.symlink", "os.link", "signal.pthread_kill", "subprocess.Popen", "pty.spawn",
        "sys.addaudithook", "resource.setrlimit", "resource.prlimit", "gc.get_objects", "gc.get_referrers",
        "gc.get_referents", "sqlite3.enable_load_extension", "sqlite3.load_extension", "webbrowser.open",
    }
)  # fmt: skip
_BLOCKED_PREFIXES = ("ctypes.", "socket.", "_posixsubprocess.")
# event -> (indices of path arguments that must lie in scratch, indices of dir_fd arguments that must be unset)
_PATH_EVENTS = {
    "os.remove": ((0,), (1,)),
    "os.rmdir": ((0,), (1,)),
    "os.mkdir": ((0,), (2,)),
    "os.rename": ((0, 1), (2, 3)),
    "os.chmod": ((0,), (2,)),
    "os.chown": ((0,), (3,)),
    "os.utime": ((0,), (3,)),
    "os.truncate": ((0,), ()),
    "os.setxattr": ((0,), ()),
    "os.removexattr": ((0,), ()),
    "shutil.rmtree": ((0,), (1,)),
    "shutil.copyfile": ((1,), ()),
    "shutil.copymode": ((1,), ()),
    "shutil.copystat": ((1,), ()),
    "shutil.copytree": ((1,), ()),
    "shutil.move": ((0, 1), ()),
    "shutil.chown": ((0,), ()),
    "shutil.make_archive": ((0,), ()),
    "shutil.unpack_archive": ((1,), ()),
}
_WRITE_FLAGS = os.O_WRONLY | os.O_RDWR | os.O_APPEND | os.O_CREAT | os.O_TRUNC


def _make_hook(scratch: str) -> Any:
    """Build the audit hook; everything it uses is bound here so tools cannot monkeypatch it afterwards."""
    prefix = scratch + "/"
    blocked, blocked_prefixes, write_flags = _BLOCKED_EVENTS, _BLOCKED_PREFIXES, _WRITE_FLAGS
    path_events = dict(_PATH_EVENTS)  # private copy: the module-level dict is reachable from tool code
    str_type, bytes_type, type_of, size_of, denied = str, bytes, type, len, PermissionError
    path_types = _plain_path_types()

    def inside(path: Any, relative_ok: bool = True) -> bool:
        kind = type_of(path)
        if kind in path_types:
            path = str_type(path)
        elif kind is bytes_type:
            path = str_type(path, "utf-8", "surrogateescape")
        elif kind is not str_type:
            return False  # file descriptors and custom PathLike objects (whose __fspath__ could lie)
        if not path.startswith("/"):
            if not relative_ok:
                return False
            path = prefix + path
        parts: list[str] = []
        for part in path.split("/"):
            if part == "..":
                if parts:
                    parts.pop()
            elif part and part != ".":
                parts.append(part)
        normal = "/" + "/".join(parts)
        return normal == scratch or normal.startswith(prefix)

    def hook(event: str, args: tuple) -> None:
        if event in blocked or event.startswith(blocked_prefixes):
            raise denied(f"{event} is not allowed in the tool sandbox")
        if event == "open":
            path, mode, flags = args
            if mode is None:  # os.open may carry a dir_fd the event does not show: demand an absolute path
                if flags & write_flags and not inside(path, relative_ok=False):
                    raise denied(f"writing {path!r} is not allowed (only inside {scratch})")
            elif ("w" in mode or "a" in mode or "x" in mode or "+" in mode) and not inside(path):
                raise denied(f"writing {path!r} is not allowed (only inside {scratch})")
        elif event == "sqlite3.connect":
            if args[0] not in (":memory:", b":memory:", "") and not inside(args[0]):
                raise denied("sqlite databases are only allowed inside the scratch dir")
        elif event in path_events:
            paths, dir_fds = path_events[event]
            count = size_of(args)
            for i in dir_fds:
                if i < count and args[i] is not None and args[i] != -1:
                    raise denied(f"{event} with dir_fd is not allowed in the tool sandbox")
            for i in paths:
                if i < count and not inside(args[i]):
                    raise denied(f"{event} is only allowed inside {scratch}")

    return hook


def _plain_path_types() -> frozenset[type]:
    import pathlib

    return frozenset({pathlib.Path, pathlib.PosixPath, pathlib.PurePath, pathlib.PurePosixPath})


# ---------------------------------------------------------------------------------------------------- protocol


def _read_exact(fd: int, size: int) -> bytes:
    chunks, missing = [], size
    while missing:
        chunk = os.read(fd, min(missing, 1 << 20))
        if not chunk:
            raise EOFError
        chunks.append(chunk)
        missing -= len(chunk)
    return b"".join(chunks)


def _write_frame(fd: int, data: bytes) -> None:
    view = memoryview(len(data).to_bytes(_HEADER, "big") + data)
    while view:
        view = view[os.write(fd, view) :]


class _Worker:
    """State of one worker process: compiled code, domain blobs, open episode states."""

    def __init__(self, scratch: str, settings: dict[str, Any]) -> None:
        import inspect
        import marshal
        import time

        self.scratch = scratch
        self.timeout = float(settings["timeout_s"])
        self.max_chars = int(settings["max_output_chars"])
        self.cpu_retire = settings["cpu_s"] * _RETIRE_FRACTION
        self.sources: dict[str, str] = {}
        self.compiled: OrderedDict[str, Any] = OrderedDict()
        self.accepts_cache: dict[tuple[str, str, str], bool] = {}
        self.domains: dict[str, bytes] = {}
        self.states: dict[str, tuple[Any, str]] = {}  # episode id -> (state, state keyword)
        self.armed = False
        self._inspect, self._marshal, self._clock = inspect, marshal, time.process_time

    # ---- one tool call, exactly the reference path
    def call(self, name: str, code_hash: str | None, arguments: Any, episode: str | None) -> tuple[str, bool]:
        timed_out = False
        try:
            self._arm()
            try:
                if isinstance(arguments, str):
                    arguments = json.loads(arguments)
                if code_hash is None:
                    raise KeyError(name)
                namespace: dict[str, Any] = {}
                exec(self._code(code_hash), namespace, namespace)
                if name not in namespace:
                    raise NameError(f"name {name} is not defined")
                function = namespace[name]
                extra = {}
                if episode is not None:
                    state, keyword = self.states[episode]
                    if self._accepts(code_hash, name, function, keyword):
                        extra = {keyword: state}
                output = format_result(function(**arguments, **extra))
            finally:
                self._disarm()
        except _Timeout:
            output, timed_out = error_message(name, timeout_text(name, self.timeout)), True
        except BaseException as error:  # noqa: BLE001 - SystemExit, KeyboardInterrupt... are tool errors too
            output = error_message(name, str(error))
        self._clean_scratch()
        return truncate(output, self.max_chars), timed_out

    def check(self, name: str, code_hash: str) -> str | None:
        try:
            self._arm()
            try:
                namespace: dict[str, Any] = {}
                exec(self._code(code_hash), namespace, namespace)
            finally:
                self._disarm()
        except _Timeout:
            return timeout_text(name, self.timeout)
        except BaseException as error:  # noqa: BLE001
            return f"{type(error).__name__}: {error}"
        finally:
            self._clean_scratch()
        if name not in namespace:
            return f"NameError: name {name} is not defined"
        return None if callable(namespace[name]) else f"TypeError: {name} is not callable"

    def open(self, episode: str, key: str | None, state_json: str | None, keyword: str, replay: list) -> None:
        gc.disable()  # a clone allocates millions of acyclic objects: collections would rescan every live state
        try:
            state = self._marshal.loads(self.domains[key]) if key is not None else json.loads(state_json or "null")
        finally:
            gc.enable()
        gc.freeze()  # keep long-lived states out of later collections (they are still freed by refcount)
        self.states[episode] = (state, keyword)
        for name, code_hash, arguments in replay:
            self.call(name, code_hash, arguments, episode)

    def _arm(self) -> None:
        signal.signal(signal.SIGALRM, self._on_alarm)  # re-installed each call in case a tool replaced it
        self.armed = True
        signal.setitimer(signal.ITIMER_REAL, self.timeout)

    def _disarm(self) -> None:
        self.armed = False
        signal.setitimer(signal.ITIMER_REAL, 0)

    def _on_alarm(self, signum: int, frame: Any) -> None:
        if self.armed:
            raise _Timeout

    def _code(self, code_hash: str) -> Any:
        code = self.compiled.get(code_hash)
        if code is None:
            code = compile(self.sources[code_hash], "<string>", "exec")  # "<string>" as exec(str) names it
            self.compiled[code_hash] = code
            if len(self.compiled) > _CODE_CACHE:
                self.compiled.popitem(last=False)
        else:
            self.compiled.move_to_end(code_hash)
        return code

    def _accepts(self, code_hash: str, name: str, function: Any, keyword: str) -> bool:
        key = (code_hash, name, keyword)
        if key not in self.accepts_cache:
            self.accepts_cache[key] = _accepts_keyword(self._inspect, function, keyword)
        return self.accepts_cache[key]

    def _clean_scratch(self) -> None:
        try:
            if os.listdir(self.scratch):
                _remove_tree(self.scratch, keep_root=True)
        except OSError:
            pass

    # ---- one message from the parent: a batch of items, one response per item that expects one
    def handle(self, message: dict[str, Any], out_fd: int) -> None:
        self.sources.update(message.get("src", {}))
        for key, state_json in message.get("defs", {}).items():
            self.domains[key] = self._marshal.dumps(json.loads(state_json))
        for item in message["items"]:
            op = item.get("op", "call")
            if op == "close":
                self.states.pop(item["e"], None)
                continue
            try:
                response = self._dispatch(op, item)
                if self._clock() > self.cpu_retire:
                    response["r"] = 1
                data = json.dumps(response)
            except Exception as error:  # noqa: BLE001 - protocol-level failure, reported to the parent
                data = json.dumps({"x": f"{type(error).__name__}: {error}"})
            _write_frame(out_fd, data.encode("utf-8"))

    def _dispatch(self, op: str, item: dict[str, Any]) -> dict[str, Any]:
        if op == "call":
            output, timed_out = self.call(item["n"], item["h"], item["a"], item.get("e"))
            return {"o": output, "t": 1} if timed_out else {"o": output}
        if op == "open":
            self.open(item["e"], item.get("k"), item.get("s"), item["kw"], item["r"])
            return {"ok": 1}
        if op == "check":
            return {"c": self.check(item["n"], item["h"])}
        if op == "get":
            return {"v": self.states[item["e"]][0]}
        if op == "hash":
            return {"h": state_digest(self.states[item["e"]][0])}
        raise ValueError(f"unknown op {op!r}")


def _accepts_keyword(inspect: Any, function: Any, keyword: str) -> bool:
    try:
        parameters = inspect.signature(function).parameters
    except (TypeError, ValueError):
        return False
    parameter = parameters.get(keyword)
    if parameter is not None:
        return parameter.kind in (parameter.POSITIONAL_OR_KEYWORD, parameter.KEYWORD_ONLY)
    return any(p.kind == p.VAR_KEYWORD for p in parameters.values())


def _remove_tree(path: str, keep_root: bool) -> None:
    """Absolute-path removal (no dir_fd tricks), so the audit hook can vet every step."""
    with os.scandir(path) as entries:
        children = [(entry.path, entry.is_dir(follow_symlinks=False)) for entry in entries]
    for child, is_dir in children:
        if is_dir:
            _remove_tree(child, keep_root=False)
        else:
            os.remove(child)
    if not keep_root:
        os.rmdir(path)


def main(argv: list[str]) -> None:
    in_fd, out_fd, settings = int(argv[1]), int(argv[2]), json.loads(argv[3])
    scratch = os.path.realpath(settings["scratch"])
    null = os.open(os.devnull, os.O_RDWR)
    for fd in (0, 1, 2):
        os.dup2(null, fd)
    os.close(null)
    sys.stdout = sys.stderr = _Sink()
    worker = _Worker(scratch, settings)
    layers = _harden(scratch, settings)
    layers.append("timer")
    _write_frame(out_fd, json.dumps({"ready": 1, "layers": layers}).encode("utf-8"))
    while True:
        try:
            size = int.from_bytes(_read_exact(in_fd, _HEADER), "big")
            message = json.loads(_read_exact(in_fd, size))
        except EOFError:
            return
        worker.handle(message, out_fd)


if __name__ == "__main__":
    main(sys.argv)
