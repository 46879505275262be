"""Tool worker: a pristine fork server that runs LLM-generated tool code only in short-lived child processes.

Started by `ToolRuntime` as `python -I -S _worker.py IN_FD OUT_FD SETTINGS_JSON`; stdlib only. Messages are
length-prefixed JSON on two dedicated pipes (fds 0-2 point at /dev/null), so nothing a tool prints or writes to
stdout can reach the protocol. The parent also imports this file for the reference result/error rules and for the
wire protocol (its keys and framing are defined only here, as the worker cannot import ftrl), which is why
importing it has no side effects.

Why a fork server: a warm process that ran one environment's tool code could carry that code's changes
(monkeypatched `json.dumps`, replaced builtins, module globals, files) into the next environment, so one generated
environment could corrupt the verifiable reward of every later one. The server itself never runs tool code: it
sets up the namespaces once, preloads the stdlib, and forks a child per environment (copy-on-write, about a
millisecond) that starts from the server's clean state with its own empty scratch folder. A stateless environment's
calls in one message share one child; a stateful episode keeps its child (holding the state) until it is closed,
and a dead child is re-forked and its journal replayed.

Isolation layers (each best effort; active ones are reported to the parent in the ready message; without root and
without user namespaces only fork, seccomp, rlimits, audit and timer remain, and the parent warns once):
  userns     server, when not root: unshare(CLONE_NEWUSER) mapping only the user's own uid and gid, which grants the
             rights the layers below need inside the namespace; the server keeps them to set up each child, every
             child drops them before tool code runs
  pidns      child: each child is pid 1 of a PID namespace of its own (the server unshares CLONE_NEWPID before each
             fork and re-enters its own namespace after it): no other process exists for tool code, so none can be
             seen, signalled, reniced or rescheduled, whichever ftrl run or worker it belongs to. Being pid 1, a
             signal that tool code sends itself without a handler (signal.raise_signal) is ignored; faults kill it
  netns      server: unshare(CLONE_NEWNET): no interfaces except a down loopback
  ipcns      server: unshare(CLONE_NEWIPC): no System V IPC or POSIX message queues shared with anyone
  mountns    server: unshare(CLONE_NEWNS), no propagation to or from the host; each child unshares its own and
             mounts a fresh size-capped tmpfs on its scratch folder, which disappears with the child whatever it
             holds; only the server writes in the folder that holds the scratch folders
  view       server: pivot_root into a read-only tmpfs holding only the stdlib folders (site-packages covered), the
             OS's shared libraries, time zones, /etc/localtime and ld.so.cache, /dev/null, zero, full, random and
             urandom, and the scratch folder; no /proc, /sys, home, project, working directory or other files
  seccomp    server, inherited by every child: mknod and mknodat fail with EPERM (FIFOs and device nodes have no
             audit event)
  fork       a fresh child process per environment (see above); it forgets, before tool code runs, everything the
             server holds for other environments (code, states, journals, the batch in hand), since tool code can
             walk up its stack into the server's frames; its own code arrives with each request
  uid        child, when root: drop to 65534 (so RLIMIT_NPROC=0 applies: no fork, no threads); skipped only when
             the stdlib would stay unreadable to that uid (no mount namespace and Python under a private home).
             Without root, tool code keeps the user's uid, which RLIMIT_NPROC=0 already stops from forking
  rlimits    child: address space, CPU seconds, file size, no core dumps, open files, processes
  audit      child: sys.addaudithook (irremovable): blocks process creation, signals, sockets, ctypes, gc
             introspection, rlimit changes, chdir, links, and file writes/removals outside the child's scratch dir
  timer      child: SIGALRM raises `_Timeout` in Python code; the server SIGKILLs a child that does not stop (code
             stuck in C) and the parent SIGKILLs a server that misses its deadline
"""

from __future__ import annotations

import gc
import hashlib
import io
import json
import os
import select
import signal
import sys
import time
from collections import OrderedDict
from typing import Any

_CODE_CACHE = 4096
_NOBODY = 65534

# ---- wire protocol, shared with runtime.py: every message is one frame, a big-endian length then that much JSON
HEADER_BYTES = 4
# a message from the parent: a batch of items, plus the code texts and shared domain states they need
ITEMS, SOURCES, DOMAINS = "items", "src", "defs"
# an item: what to do, for which episode (one process per environment), with which tool, code and arguments
OP, EPISODE, NAME, CODE_HASH, ARGUMENTS = "op", "e", "n", "h", "a"
CALL, CHECK, OPEN, GET, HASH, CLOSE = "call", "check", "open", "get", "hash", "close"
# an "open" item: the episode's initial state (a shared domain's key, or its own JSON), keyword and journal (and,
# from the server to its child, the code the journal's calls need)
DOMAIN_KEY, STATE_JSON, STATE_KWARG, REPLAY, REPLAY_SOURCES = "k", "s", "kw", "r", "rs"
# a response: a call's tool message (and whether it did not complete), a check's error text (or null), the state,
# its digest, an acknowledged open, or a protocol-level failure; the first message of a worker says it is ready
OUTPUT, INCOMPLETE, CHECKED, VALUE, DIGEST, OPENED, PROTOCOL_ERROR = "o", "t", "c", "v", "h", "ok", "x"
READY, LAYERS = "ready", "layers"
#: the response field that carries each operation's answer (OPEN answers with OPENED only)
ANSWER_FIELD = {CALL: OUTPUT, CHECK: CHECKED, GET: VALUE, HASH: DIGEST}


def format_result(value: Any) -> str:
    """Reference conversion: exact dict/list -> JSON (non-ASCII kept), str as is, anything else -> str()."""
    if type(value) == dict or type(value) == list:  # noqa: E721 - the reference checks exact types
        return json.dumps(value, ensure_ascii=False)
    if isinstance(value, str):
        return value
    return str(value)


#: How every failed tool call's message begins (the reference's spelling, typo included): `error_message`.
TOOL_ERROR_PREFIX = "an error occured when call"


def error_message(name: str, error: BaseException | str) -> str:
    """Reference tool-message text for any failure (its spelling of "occured" is what the model saw)."""
    return f"{TOOL_ERROR_PREFIX} {name}: {error}"


def timeout_text(name: str, seconds: float) -> str:
    """The str(e) of a timed-out call, shared by the in-worker timer and the parent's hard kill."""
    return f"Function {name} timed out after {seconds:f} seconds."


def memory_text(memory_mb: int) -> str:
    """The str(e) of a tool that ran out of memory: Python's own MemoryError has no text at all."""
    return f"MemoryError: tool exceeded the runtime's memory limit ({memory_mb} MiB)"


def failure_text(reason: str, ended: str, memory_mb: int) -> str:
    """The str(e) of a call whose process failed. A process that was killed (SIGKILL) while the runtime still waited
    for it was killed from outside, in practice by the kernel for memory (an OOM kill or a cgroup limit; the
    per-process address-space limit surfaces as MemoryError instead), so the text says so."""
    if reason == "worker exited" and ended == f"signal {int(signal.SIGKILL)}":
        return f"tool process was killed (SIGKILL), most likely out of memory (the runtime's limit is {memory_mb} MiB)"
    return f"tool {reason} ({ended})"


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

# Preloaded by the server so that children (which may no longer read every path) find them warm and import nothing.
_PRELOAD = (
    "collections",
    "copy",
    "dataclasses",
    "datetime",
    "decimal",
    "enum",
    "functools",
    "inspect",
    "itertools",
    "marshal",
    "math",
    "operator",
    "random",
    "re",
    "resource",
    "statistics",
    "string",
    "time",
    "typing",
)
_MS_RDONLY, _MS_NOSUID, _MS_NODEV, _MS_NOEXEC, _MS_REMOUNT, _MS_BIND, _MS_REC, _MS_PRIVATE = (
    1,
    2,
    4,
    8,
    32,
    4096,
    16384,
    1 << 18,
)
# per-mount flags a read-only remount must repeat: inside a user namespace the kernel refuses to clear them
_MOUNT_OPTIONS = {
    "nosuid": _MS_NOSUID,
    "nodev": _MS_NODEV,
    "noexec": _MS_NOEXEC,
    "noatime": 1024,
    "nodiratime": 2048,
    "relatime": 1 << 21,
    "strictatime": 1 << 24,
}
_CLONE_NEWNS, _CLONE_NEWIPC, _CLONE_NEWUSER, _CLONE_NEWPID, _CLONE_NEWNET = (
    0x00020000,
    0x08000000,
    0x10000000,
    0x20000000,
    0x40000000,
)
_MNT_DETACH = 2
_PIVOT_ROOT = {"x86_64": 155, "aarch64": 41}  # syscall numbers: glibc has no wrapper
# What tool code may read besides its scratch: the stdlib (the folders on `sys.path` of `python -I -S`, each with its
# site-packages covered) and the Python installation's lib folder, the OS's shared libraries (extension modules load
# them), time zones, and these devices.
_SYSTEM_VIEW = ("/usr/lib", "/usr/lib64", "/lib", "/lib64", "/usr/share/zoneinfo", "/etc/localtime", "/etc/ld.so.cache")
_DEVICES = ("/dev/null", "/dev/zero", "/dev/full", "/dev/random", "/dev/urandom")
# seccomp: per architecture, its AUDIT_ARCH value and the mknod/mknodat syscall numbers (x86_64: also its x32 ABI)
_MKNOD_SYSCALLS = {
    "x86_64": (0xC000003E, (133, 259, 0x40000000 | 133, 0x40000000 | 259)),
    "aarch64": (0xC00000B7, (33,)),
}


def _harden_server(scratch: str, settings: dict[str, Any], libc: Any) -> tuple[list[str], bool, int | None]:
    """Namespaces and the mount view, shared by all children; returns the active layers, whether children drop root,
    and an fd of the PID namespace in which each child gets one of its own (None: children share the server's)."""
    layers: list[str] = []
    root = os.geteuid() == 0
    in_user_namespace = libc is not None and not root and _enter_user_namespace(libc)
    if in_user_namespace:
        layers.append("userns")
    privileged = libc is not None and (root or in_user_namespace)
    pid_namespace = _pid_namespaces(libc, in_user_namespace) if privileged else None
    if pid_namespace is not None:
        layers.append("pidns")
    if libc is not None and libc.unshare(_CLONE_NEWNET) == 0:
        layers.append("netns")
    if libc is not None and libc.unshare(_CLONE_NEWIPC) == 0:
        layers.append("ipcns")
    os.chdir("/")  # the parent's working directory is not in the view; keep no handle on it
    if privileged and _private_mounts(libc):
        layers.append("mountns")
        if _minimal_root(libc, scratch):
            layers.append("view")
        else:  # every mount stays visible, read-only; children still get their own scratch (see `_isolate_child`)
            _mount_scratch_root(libc, scratch)
            _read_only(libc, "/", keep=(scratch,))
    if libc is not None and _refuse_mknod(libc):
        layers.append("seccomp")
    drop = root and _can_run_as(_NOBODY)
    if drop and "mountns" not in layers:
        os.chmod(scratch, 0o711)  # children reach their own folders, and create nothing beside them
    return layers, drop, pid_namespace


def _enter_user_namespace(libc: Any) -> bool:
    """A user namespace in which this process keeps its uid and gid (nothing else is mapped) and holds the
    capabilities to set up its own network and mount namespaces; False when the kernel refuses one."""
    uid, gid = os.geteuid(), os.getegid()
    if libc.unshare(_CLONE_NEWUSER) != 0:
        return False
    try:
        for name, text in (("setgroups", "deny"), ("uid_map", f"{uid} {uid} 1"), ("gid_map", f"{gid} {gid} 1")):
            fd = os.open(f"/proc/self/{name}", os.O_WRONLY)
            try:
                os.write(fd, text.encode())  # one write each, as the kernel requires
            finally:
                os.close(fd)
    except OSError:
        _drop_capabilities(libc)  # inside a namespace that cannot be set up: keep none of its rights
        return False
    return True


def _pid_namespaces(libc: Any, in_user_namespace: bool) -> int | None:
    """An fd of the server's PID namespace, or None when the kernel refuses new ones.

    Before each fork the server unshares CLONE_NEWPID (its next child becomes pid 1 of a namespace of its own, in
    which no other process exists, so none can be seen or signalled) and then re-enters this namespace with setns,
    which allows the next unshare. Re-entering needs the rights over the namespace: in a user namespace the server
    first becomes pid 1 of a PID namespace that its user namespace owns, and the process the parent started stays
    behind as its stand-in (see `_stand_in`)."""
    if in_user_namespace:
        if libc.unshare(_CLONE_NEWPID) != 0:
            return None
        _stand_in(libc)
    fd = os.open("/proc/self/ns/pid", os.O_RDONLY)
    if libc.unshare(_CLONE_NEWPID) != 0 or libc.setns(fd, _CLONE_NEWPID) != 0:
        os.close(fd)
        return None
    return fd


def _stand_in(libc: Any) -> None:
    """Fork: the child returns and carries on as the server; this process keeps no fds (so the parent sees EOF when
    the server ends), waits, and ends the way the server ended. The server dies with it (the parent kills it)."""
    pid = os.fork()
    if pid == 0:
        libc.prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
        return
    os.closerange(3, 1 << 16)
    code = os.waitstatus_to_exitcode(os.waitpid(pid, 0)[1])
    if code < 0:
        signal.signal(-code, signal.SIG_DFL)
        os.kill(os.getpid(), -code)
    os._exit(code)


def _drop_capabilities(libc: Any) -> None:
    """Empty this process's effective, permitted and inheritable capability sets (capset, version 3)."""
    import ctypes

    header = (ctypes.c_uint32 * 2)(0x20080522, 0)  # _LINUX_CAPABILITY_VERSION_3, this process
    libc.capset(header, (ctypes.c_uint32 * 6)())


def _refuse_mknod(libc: Any) -> bool:
    """A seccomp filter (inherited by every child) that fails mknod and mknodat with EPERM: FIFOs and device nodes
    have no audit event, so the audit hook cannot see them. Needs no_new_privs, harmless here (nothing is exec'd)."""
    import ctypes
    import errno

    known = _MKNOD_SYSCALLS.get(os.uname().machine)
    if known is None:
        return False
    arch, numbers = known
    load, equal, answer = 0x20, 0x15, 0x06  # BPF_LD|BPF_W|BPF_ABS, BPF_JMP|BPF_JEQ|BPF_K, BPF_RET|BPF_K
    allow, refuse = 0x7FFF0000, 0x00050000 | errno.EPERM  # SECCOMP_RET_ALLOW, SECCOMP_RET_ERRNO
    count = len(numbers)
    program = [(load, 0, 0, 4), (equal, 0, count + 1, arch), (load, 0, 0, 0)]  # seccomp_data.arch, then .nr
    program += [(equal, count - i, 0, number) for i, number in enumerate(numbers)]
    program += [(answer, 0, 0, allow), (answer, 0, 0, refuse)]

    class Instruction(ctypes.Structure):
        _fields_ = [("code", ctypes.c_ushort), ("jt", ctypes.c_ubyte), ("jf", ctypes.c_ubyte), ("k", ctypes.c_uint)]

    class Program(ctypes.Structure):
        _fields_ = [("len", ctypes.c_ushort), ("filter", ctypes.POINTER(Instruction))]

    instructions = (Instruction * len(program))(*(Instruction(*fields) for fields in program))
    fprog = Program(len(program), instructions)
    # PR_SET_NO_NEW_PRIVS, then PR_SET_SECCOMP with SECCOMP_MODE_FILTER
    return libc.prctl(38, 1, 0, 0, 0) == 0 and libc.prctl(22, 2, ctypes.byref(fprog), 0, 0) == 0


def _isolate_child(libc: Any, directory: str, settings: dict[str, Any], mounts: bool, uid: int) -> None:
    """Per-child layers that need the server's rights, so applied before the uid or capability drop: a session of
    its own, and a mount namespace of its own in which its scratch folder is a fresh size-capped tmpfs that
    disappears with the child, whatever it holds (FIFOs and sockets included). Tool code finds its temp folder
    there too."""
    os.setsid()
    os.environ["TMPDIR"] = directory
    if mounts:
        options = f"size={settings['scratch_mb']}m,mode=0700,uid={uid},gid={uid if uid == _NOBODY else os.getgid()}"
        flags = _MS_NOSUID | _MS_NODEV | _MS_NOEXEC
        if (
            libc.unshare(_CLONE_NEWNS) != 0
            or libc.mount(b"tmpfs", directory.encode(), b"tmpfs", flags, options.encode()) != 0
        ):
            os._exit(70)  # never run tool code in a scratch folder other environments could reach


def _harden_child(directory: str, settings: dict[str, Any], drop: bool, libc: Any) -> None:
    """Per-child layers, applied after the fork and before any tool code: uid (or, in a user namespace, no
    capabilities), death with the server, rlimits, audit hook."""
    import resource

    if drop:
        os.setgroups([])
        os.setgid(_NOBODY)
        os.setuid(_NOBODY)
    elif libc is not None and os.geteuid() != 0:
        _drop_capabilities(libc)  # the server keeps its namespace's rights to set up each child; tool code has none
    if libc is not None:  # after the uid change, which would clear it; a server that died before this line
        libc.prctl(1, signal.SIGKILL)  # closed the child's pipe, so its first read ends it (PR_SET_PDEATHSIG)
    os.chdir(directory)
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
    for name in [m for m in sys.modules if m == "ctypes" or m.startswith(("ctypes.", "_ctypes"))]:
        del sys.modules[name]
    sys.addaudithook(_make_hook(directory))


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


def _private_mounts(libc: Any) -> bool:
    """Own mount namespace, whose mounts no longer propagate to or from the host's."""
    return libc.unshare(_CLONE_NEWNS) == 0 and libc.mount(b"none", b"/", None, _MS_REC | _MS_PRIVATE, None) == 0


def _mount_scratch_root(libc: Any, path: str) -> bool:
    """The folder holding the children's scratch folders: a small tmpfs only the server writes in (mode 0555: a
    child, as uid 65534 or without capabilities, can create nothing there, so nothing it leaves reaches the next)."""
    flags = _MS_NOSUID | _MS_NODEV | _MS_NOEXEC
    return libc.mount(b"tmpfs", path.encode(), b"tmpfs", flags, b"size=1m,mode=0555") == 0


def _minimal_root(libc: Any, scratch: str) -> bool:
    """Pivot into a new root, a read-only tmpfs holding only the stdlib, the OS's shared libraries and time zones, a
    few devices and the scratch folder: the user's files, the project, held-out data and other runs' files do not
    exist for tool code. Built on the scratch folder itself (it is empty); False, with nothing changed, on failure."""
    new = scratch.rstrip("/")
    flags = _MS_NOSUID | _MS_NODEV
    if libc.mount(b"tmpfs", new.encode(), b"tmpfs", flags, b"size=1m,mode=0755") != 0:
        return False
    try:
        # `python -I -S`: sys.path holds the stdlib folders only; the installation's lib folder holds the shared
        # libraries its extension modules may link (conda, pyenv --enable-shared)
        python = [path for path in (os.path.join(sys.base_prefix, "lib"), *sys.path) if os.path.isdir(path)]
        for path in (*python, *_SYSTEM_VIEW, *_DEVICES):
            if not _bind_into(libc, new, path):
                raise OSError(f"cannot bind {path}")
        for path in python:
            for packages in ("site-packages", "dist-packages"):
                if os.path.isdir(os.path.join(path, packages)):  # installed packages are not the stdlib
                    libc.mount(b"tmpfs", f"{new}{path}/{packages}".encode(), b"tmpfs", flags, b"size=4k,mode=0555")
        os.makedirs(new + scratch)
        if not _mount_scratch_root(libc, new + scratch):
            raise OSError("cannot mount the scratch folder")
        os.mkdir(new + "/.old")
        _read_only(libc, new, keep=(new, new + scratch))
        number = _PIVOT_ROOT.get(os.uname().machine)
        if number is None or libc.syscall(number, new.encode(), f"{new}/.old".encode()) != 0:
            raise OSError("pivot_root failed")
    except OSError:
        libc.umount2(new.encode(), _MNT_DETACH)
        return False
    os.chdir("/")
    libc.umount2(b"/.old", _MNT_DETACH)
    os.rmdir("/.old")
    libc.mount(None, b"/", None, _MS_REMOUNT | _MS_BIND | _MS_RDONLY | flags, None)
    return True


def _bind_into(libc: Any, new: str, path: str) -> bool:
    """Bind `path` (a folder or file) at the same place under `new`; a symlink is copied as a symlink (its target
    must be bound on its own). A path this system does not have is skipped."""
    if not os.path.lexists(path):
        return True
    target = new + path
    os.makedirs(os.path.dirname(target), exist_ok=True)
    if os.path.islink(path):
        if not os.path.lexists(target):
            os.symlink(os.readlink(path), target)
        return True
    real = os.path.realpath(path)
    if os.path.isdir(real):
        os.makedirs(target, exist_ok=True)
    else:
        os.close(os.open(target, os.O_CREAT | os.O_WRONLY, 0o644))
    return libc.mount(real.encode(), target.encode(), None, _MS_BIND | _MS_REC, None) == 0


def _read_only(libc: Any, under: str, keep: tuple[str, ...]) -> None:
    """Remount every mount at or below `under` but those in `keep` read-only, keeping its nosuid/nodev/noexec/atime
    flags."""
    with open("/proc/self/mountinfo", encoding="utf-8") as table:
        mounts = [(fields[4], fields[5].split(",")) for fields in (line.split() for line in table)]
    prefix = under.rstrip("/") + "/"
    for point, options in mounts:
        if point not in keep and (point == under or point.startswith(prefix)) and "\\" not in point:
            kept = sum(_MOUNT_OPTIONS.get(option, 0) for option in options)
            libc.mount(None, point.encode(), None, _MS_REMOUNT | _MS_BIND | _MS_RDONLY | kept, None)


_BLOCKED_EVENTS = frozenset(
    {
        "os.fork",
        "os.forkpty",
        "os.posix_spawn",
        "os.exec",
        "os.spawn",
        "os.system",
        "os.kill",
        "os.killpg",
        "os.chdir",
        "os.symlink",
        "os.link",
        "signal.pthread_kill",
        "subprocess.Popen",
        "pty.spawn",
        "sys.addaudithook",
        "resource.setrlimit",
        "resource.prlimit",
        "gc.get_objects",
        "gc.get_referrers",
        "gc.get_referents",
        "sqlite3.enable_load_extension",
        "sqlite3.load_extension",
        "webbrowser.open",
    }
)
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


class FrameError(Exception):
    """The peer broke the protocol: a frame larger than allowed, or one that is not a JSON object."""


def encode_frame(message: dict[str, Any]) -> bytes:
    data = json.dumps(message).encode("utf-8")
    return len(data).to_bytes(HEADER_BYTES, "big") + data


def send_frame(fd: int, message: dict[str, Any], timeout: float | None = None) -> None:
    """Write one message; on a non-blocking fd wait at most `timeout` seconds in all for room (TimeoutError)."""
    view = memoryview(encode_frame(message))
    stop = None if timeout is None else time.monotonic() + timeout
    while view:
        try:
            view = view[os.write(fd, view) :]
        except BlockingIOError:
            poller = select.poll()
            poller.register(fd, select.POLLOUT)
            if not poller.poll(None if stop is None else max(stop - time.monotonic(), 0) * 1000):
                raise TimeoutError from None


def read_frame(fd: int, buffer: bytearray, limit: int | None = None, timeout: float | None = None) -> dict[str, Any]:
    """The next message from `fd`, with `buffer` holding bytes read past earlier frames (kept for the next call).

    On a non-blocking fd `timeout` bounds the whole wait (TimeoutError); EOFError when the peer closed its end,
    FrameError when it announces more than `limit` bytes or sends something other than a JSON object."""
    poller = None
    if timeout is not None:
        poller = select.poll()
        poller.register(fd, select.POLLIN)
        stop = time.monotonic() + timeout
    size = None
    while True:
        if size is None and len(buffer) >= HEADER_BYTES:
            size = int.from_bytes(buffer[:HEADER_BYTES], "big")
            if limit is not None and size > limit:
                raise FrameError("sent an oversized message")
        if size is not None and len(buffer) >= HEADER_BYTES + size:
            frame = bytes(buffer[HEADER_BYTES : HEADER_BYTES + size])
            del buffer[: HEADER_BYTES + size]
            try:
                message = json.loads(frame)
            except ValueError:
                message = None
            if not isinstance(message, dict):
                raise FrameError("sent a malformed message")
            return message
        if poller is not None:
            left = stop - time.monotonic()
            if left <= 0 or not poller.poll(left * 1000):
                raise TimeoutError
        try:
            chunk = os.read(fd, 1 << 20)
        except BlockingIOError:
            continue
        if not chunk:
            raise EOFError
        buffer += chunk


class _Runner:
    """A child's tool-running state: compiled code and, for a stateful episode, its one state."""

    def __init__(self, directory: str, settings: dict[str, Any], sources: dict[str, str], domains: dict[str, bytes]):
        import inspect
        import marshal

        self.scratch = directory
        self.timeout = float(settings["timeout_s"])
        self.memory_mb = int(settings["memory_mb"])
        self.max_chars = int(settings["max_output_chars"])
        self.sources, self.domains = sources, domains
        self.compiled: OrderedDict[str, Any] = OrderedDict()
        self.accepts_cache: dict[tuple[str, str, str], bool] = {}
        self.state: tuple[Any, str] | None = None  # (state, state keyword) of a stateful episode
        self.armed = False
        self._inspect, self._marshal = inspect, marshal

    # ---- one tool call, exactly the reference path
    def call(self, name: str, code_hash: str | None, arguments: Any) -> tuple[str, bool]:
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
                if self.state is not None:
                    state, keyword = self.state
                    if self._accepts(code_hash, name, function, keyword):
                        extra = {keyword: state}
                output = format_result(function(**arguments, **extra))
            finally:
                self._disarm()
        except _Timeout:
            output, timed_out = error_message(name, timeout_text(name, self.timeout)), True
        except MemoryError as error:
            output = error_message(name, str(error) or memory_text(self.memory_mb))
        except BaseException as error:  # noqa: BLE001 - SystemExit, KeyboardInterrupt... are tool errors too
            output = error_message(name, str(error))
        self._clean_scratch()
        return truncate(output, self.max_chars), timed_out

    def check(self, name: str, code_hash: str) -> str | None:
        """Load the code as a call would: None if it defines a callable `name`, else the error, with the line of the
        top-level statement that raised it."""
        code = None
        try:
            self._arm()
            try:
                code = self._code(code_hash)
                namespace: dict[str, Any] = {}
                exec(code, namespace, namespace)
            finally:
                self._disarm()
        except _Timeout:
            return timeout_text(name, self.timeout)
        except MemoryError as error:
            return f"MemoryError: {error}" if str(error) else memory_text(self.memory_mb)
        except BaseException as error:  # noqa: BLE001
            traceback = error.__traceback__
            while traceback is not None and traceback.tb_frame.f_code is not code:
                traceback = traceback.tb_next
            where = f" (line {traceback.tb_lineno})" if traceback is not None else ""
            return f"{type(error).__name__}: {error}{where}"
        finally:
            self._clean_scratch()
        if name not in namespace:
            return f"NameError: name {name} is not defined"
        return None if callable(namespace[name]) else f"TypeError: {name} is not callable"

    def open(self, key: str | None, state_json: str | None, keyword: str, replay: list) -> None:
        gc.disable()  # a clone allocates millions of acyclic objects: collections would rescan every live state
        try:
            state = self._marshal.loads(self.domains[key]) if key is not None else json.loads(state_json or "null")
        finally:
            gc.enable()
        gc.freeze()  # keep the long-lived state out of later collections (it is still freed by refcount)
        self.state = (state, keyword)
        for name, code_hash, arguments in replay:
            self.call(name, code_hash, arguments)

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

    # ---- the child's side of the server <-> child pipe: one request frame, one response frame
    def serve(self, in_fd: int, out_fd: int) -> None:
        """Answer requests until EOF. Everything the framing uses is bound here, before any tool code runs, so an
        environment that replaces `len` or `json.dumps` for itself still gets its answers through (which is why
        this loop does not call `read_frame`/`send_frame`, whose globals tool code could replace)."""
        decode, encode = json.JSONDecoder().decode, json.JSONEncoder().encode
        read, write, size_of, view_of = os.read, os.write, len, memoryview
        to_int, to_bytes = int.from_bytes, int.to_bytes
        header, op_key, source_key, hash_key, error_key = HEADER_BYTES, OP, SOURCES, CODE_HASH, PROTOCOL_ERROR

        def read_exact(size: int) -> bytes:
            data = b""
            while size_of(data) < size:
                chunk = read(in_fd, size - size_of(data))
                if not chunk:
                    raise EOFError
                data += chunk
            return data

        while True:
            try:
                item = decode(read_exact(to_int(read_exact(header), "big")).decode("utf-8"))
            except EOFError:
                return
            if item.get(source_key) is not None:
                self.sources[item[hash_key]] = item[source_key]
            try:
                response = self._dispatch(item[op_key], item)
                data = encode(response).encode("utf-8")
            except Exception as error:  # noqa: BLE001 - protocol-level failure, reported to the parent
                data = encode({error_key: f"{type(error).__name__}: {error}"}).encode("utf-8")
            view = view_of(to_bytes(size_of(data), header, "big") + data)
            while view:
                view = view[write(out_fd, view) :]

    def _dispatch(self, op: str, item: dict[str, Any]) -> dict[str, Any]:
        if op == CALL:
            output, timed_out = self.call(item[NAME], item[CODE_HASH], item[ARGUMENTS])
            return {OUTPUT: output, INCOMPLETE: 1} if timed_out else {OUTPUT: output}
        if op == OPEN:
            self.sources.update(item.get(REPLAY_SOURCES) or {})
            self.open(item.get(DOMAIN_KEY), item.get(STATE_JSON), item[STATE_KWARG], item[REPLAY])
            return {OPENED: 1}
        if op == CHECK:
            return {CHECKED: self.check(item[NAME], item[CODE_HASH])}
        if self.state is None:
            raise ValueError(f"{op!r} needs an open episode")
        if op == GET:
            return {VALUE: self.state[0]}
        if op == HASH:
            return {DIGEST: state_digest(self.state[0])}
        raise ValueError(f"unknown op {op!r}")


class _Child:
    """The server's handle on one child: its pid, pipes and scratch folder."""

    __slots__ = ("pid", "to_child", "from_child", "directory", "buffer")

    def __init__(self, pid: int, to_child: int, from_child: int, directory: str) -> None:
        self.pid, self.to_child, self.from_child, self.directory = pid, to_child, from_child, directory
        self.buffer = bytearray()


class _Failure(Exception):
    """A child missed its deadline, died or broke the protocol; it has been killed (`ended` says how it ended)."""

    def __init__(self, reason: str, ended: str, timed_out: bool = False) -> None:
        super().__init__(reason)
        self.reason, self.ended, self.timed_out = reason, ended, timed_out


class _Server:
    """The pristine process: holds sources, domain blobs and stateful episodes' journals, never runs tool code."""

    def __init__(
        self,
        scratch: str,
        settings: dict[str, Any],
        layers: list[str],
        drop: bool,
        pid_namespace: int | None,
        libc: Any,
    ) -> None:
        self.scratch, self.settings, self.drop, self.libc = scratch, settings, drop, libc
        self.pid_namespace = pid_namespace
        self.private_scratch = "mountns" in layers  # each child mounts its own scratch tmpfs
        self.tool_uid = _NOBODY if drop else os.geteuid()
        self.timeout = float(settings["timeout_s"])
        # the server stops a stuck child before the parent's deadline (timeout + grace) would stop the server
        self.call_deadline = self.timeout + float(settings["kill_grace_s"]) / 2
        self.setup_deadline = float(settings["setup_timeout_s"])
        self.max_frame = int(settings["max_message_mb"]) * 1024 * 1024
        self.sources: dict[str, str] = {}
        self.domains: dict[str, bytes] = {}
        self.episodes: dict[str, dict[str, Any]] = {}  # stateful episode -> its open item and journal of calls
        self.children: dict[str, _Child] = {}  # stateful episode -> the child holding its state
        self.serial = 0
        self.inbox = bytearray()  # bytes read from the parent past the current message
        self.batch: dict[str, Any] = {}  # the message being handled
        self.dying: list[int] = []  # children killed after their work, not reaped yet
        self.spare: _Child | None = None  # a child forked ahead for the next stateless environment

    def handle(self, message: dict[str, Any], out_fd: int) -> None:
        """One message from the parent: a batch of items, one response per item that expects one."""
        self.batch = message
        self._receive(message)
        transient: tuple[str, _Child] | None = None  # the child running the current stateless environment
        try:
            for item in message[ITEMS]:
                op, episode = item.get(OP, CALL), item.get(EPISODE)
                if op == CLOSE:
                    self.episodes.pop(episode, None)
                    self._end(self.children.pop(episode, None), wait=False)
                    continue
                try:
                    if op == OPEN:
                        self._end(self.children.pop(episode, None))
                        self.episodes[episode] = {
                            DOMAIN_KEY: item.get(DOMAIN_KEY),
                            STATE_JSON: item.get(STATE_JSON),
                            STATE_KWARG: item[STATE_KWARG],
                            REPLAY: list(item[REPLAY]),
                        }
                        response = self._open(episode)
                    elif episode in self.episodes:
                        response = self._stateful(episode, op, item)
                    elif op in (CALL, CHECK):
                        if transient is None or transient[0] != episode:
                            self._end(transient[1] if transient else None, wait=False)
                            transient = None
                            transient = (episode, self._take_spare())
                        try:
                            response = self._exchange(transient[1], self._forward(item), self.call_deadline)
                        except _Failure as failure:
                            transient = None
                            response = _failed(op, item, failure, self.settings)
                    else:
                        raise ValueError(f"{op!r} for an episode that is not open")
                except Exception as error:  # noqa: BLE001 - protocol-level failure, reported to the parent
                    response = {PROTOCOL_ERROR: f"{type(error).__name__}: {error}"}
                send_frame(out_fd, response)
                del response  # a child forked for the next item must not find this one's answer on its stack
        finally:
            self._end(transient[1] if transient else None, wait=False)
            self.batch = {}

    def refill(self) -> None:
        """Fork the spare child and reap the children ended without waiting, while the parent reads the answers:
        off the next call's path."""
        if self.spare is None:
            self.spare = self._fork()
        for pid in self.dying:
            os.waitpid(pid, 0)
        self.dying.clear()

    def _receive(self, message: dict[str, Any]) -> None:
        import marshal

        self.sources.update(message.get(SOURCES, {}))
        for key, state_json in message.get(DOMAINS, {}).items():
            self.domains[key] = marshal.dumps(json.loads(state_json))

    def forget(self, domain: str | None) -> dict[str, bytes]:
        """In a new child, before any tool code: drop everything other environments sent (code, states, journals,
        the batch in hand, unread bytes), which the server's frames above the child's would otherwise still reach
        (tool code can walk up its stack). Returns the one shared state this child may need."""
        kept = {domain: self.domains[domain]} if domain is not None and domain in self.domains else {}
        for item in self.batch.get(ITEMS, ()):
            if isinstance(item, dict):
                item.clear()
        for episode in self.episodes.values():
            episode.clear()
        for container in (self.batch, self.sources, self.domains, self.episodes, self.children, self.inbox, self.dying):
            container.clear()
        self.libc = None
        return kept

    def _take_spare(self) -> _Child:
        """A clean child for a stateless environment: the one forked ahead of time, or a new one."""
        child, self.spare = self.spare, None
        if child is not None and os.waitpid(child.pid, os.WNOHANG) == (0, 0):
            return child
        self._end(child, reaped=child is not None)
        return self._fork()

    def _stateful(self, episode: str, op: str, item: dict[str, Any]) -> dict[str, Any]:
        child = self.children.get(episode)
        deadline = self.call_deadline if op in (CALL, CHECK) else self.setup_deadline
        try:
            if child is None:  # its child died: re-fork it and replay the journal
                self._open(episode)
                child = self.children[episode]
            response = self._exchange(child, self._forward(item), deadline)
        except _Failure as failure:
            self.children.pop(episode, None)
            if op not in (CALL, CHECK):
                raise RuntimeError(f"tool worker failed: {failure.reason} ({failure.ended})") from None
            return _failed(op, item, failure, self.settings)
        if op == CALL and not response.get(INCOMPLETE):
            self.episodes[episode][REPLAY].append([item[NAME], item[CODE_HASH], item[ARGUMENTS]])
        return response

    def _open(self, episode: str) -> dict[str, Any]:
        item = {OP: OPEN, **self.episodes[episode]}
        item[REPLAY_SOURCES] = {entry[1]: self.sources[entry[1]] for entry in item[REPLAY] if entry[1] in self.sources}
        child = self._fork(item[DOMAIN_KEY])
        deadline = self.setup_deadline + len(item[REPLAY]) * self.call_deadline
        response = self._exchange(child, item, deadline)
        self.children[episode] = child
        return response

    def _forward(self, item: dict[str, Any]) -> dict[str, Any]:
        """The item with its code text: a long-lived child was forked before later sources arrived."""
        code_hash = item.get(CODE_HASH)
        return {**item, SOURCES: self.sources.get(code_hash)} if isinstance(code_hash, str) else item

    def _fork(self, domain: str | None = None) -> _Child:
        self.serial += 1
        directory = os.path.join(self.scratch, f"c{self.serial}")
        os.mkdir(directory, 0o700)
        if self.drop and not self.private_scratch:
            os.chown(directory, _NOBODY, _NOBODY)
        to_child_r, to_child_w = os.pipe()
        from_child_r, from_child_w = os.pipe()
        if self.pid_namespace is not None and self.libc.unshare(_CLONE_NEWPID) != 0:
            raise OSError("cannot create a PID namespace for a tool process")
        pid = os.fork()
        if pid == 0:
            try:
                _child_main(self, to_child_r, from_child_w, directory, domain)
            finally:
                os._exit(0)
        if self.pid_namespace is not None:
            self.libc.setns(self.pid_namespace, _CLONE_NEWPID)  # back in its own: the next fork gets a new one
        os.close(to_child_r)
        os.close(from_child_w)
        os.set_blocking(from_child_r, False)
        return _Child(pid, to_child_w, from_child_r, directory)

    def _exchange(self, child: _Child, item: dict[str, Any], deadline: float) -> dict[str, Any]:
        """Send one request and wait for its response; on any failure the child is killed and `_Failure` raised."""
        try:
            send_frame(child.to_child, item)
            return read_frame(child.from_child, child.buffer, self.max_frame, deadline)
        except FrameError as error:
            raise _Failure(str(error), self._end(child)) from None
        except TimeoutError:
            raise _Failure("timed out", self._end(child), timed_out=True) from None
        except (EOFError, OSError):
            raise _Failure("worker exited", self._end(child)) from None

    def _end(self, child: _Child | None, reaped: bool = False, wait: bool = True) -> str:
        """Kill a child (idle children are killed too: it is the quickest clean stop) and remove its scratch. Without
        `wait` (a child that did its work) it is reaped later, off the call's path (see `refill`): its exit, the
        teardown of its address space and namespaces, takes longer than the rest of the call."""
        import shutil

        if child is None:
            return "not running"
        code = 0
        if not reaped:
            os.kill(child.pid, signal.SIGKILL)  # a dead child stays a zombie until reaped, so this cannot miss
            if wait:
                code = os.waitstatus_to_exitcode(os.waitpid(child.pid, 0)[1])
            else:
                self.dying.append(child.pid)
        os.close(child.to_child)
        os.close(child.from_child)
        shutil.rmtree(child.directory, ignore_errors=True)
        return f"signal {-code}" if code < 0 else f"exit code {code}"


def _failed(op: str, item: dict[str, Any], failure: _Failure, settings: dict[str, Any]) -> dict[str, Any]:
    """The response for a call or check whose process failed (the texts the parent uses for its own failures).
    INCOMPLETE marks a call that did not complete, which keeps it out of the episode's journal (its replay would
    fail again)."""
    name, timeout = item[NAME], float(settings["timeout_s"])
    if failure.timed_out:
        text = timeout_text(name, timeout)
    else:
        text = failure_text(failure.reason, failure.ended, settings["memory_mb"])
    if op == CALL:
        return {OUTPUT: error_message(name, text), INCOMPLETE: 1}
    return {CHECKED: text}


def _child_main(server: _Server, in_fd: int, out_fd: int, directory: str, domain: str | None) -> None:
    """A fresh child: keep only its own pipes, forget other environments, isolate and harden, then serve requests
    (its code arrives with each request)."""
    keep = sorted((in_fd, out_fd))
    os.closerange(3, keep[0])
    os.closerange(keep[0] + 1, keep[1])
    os.closerange(keep[1] + 1, 1 << 16)
    libc = server.libc
    domains = server.forget(domain)
    if libc is not None:
        _isolate_child(libc, directory, server.settings, server.private_scratch, server.tool_uid)
    _harden_child(directory, server.settings, server.drop, libc)
    del libc
    runner = _Runner(directory, server.settings, {}, domains)
    del server
    runner.serve(in_fd, out_fd)


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
    os.umask(0o022)  # the view's folders must stay readable to uid 65534
    for module in _PRELOAD:
        __import__(module)
    _plain_path_types()
    libc = _libc()
    layers, drop, pid_namespace = _harden_server(scratch, settings, libc)
    layers += ["fork", *(["uid"] if drop else []), "rlimits", "audit", "timer"]
    server = _Server(scratch, settings, layers, drop, pid_namespace, libc)
    del libc
    gc.freeze()  # children then share the server's objects without copying the pages gc would touch
    send_frame(out_fd, {READY: 1, LAYERS: layers})
    while True:
        try:
            message = read_frame(in_fd, server.inbox)
        except EOFError:
            return
        server.handle(message, out_fd)
        del message
        server.refill()


if __name__ == "__main__":
    main(sys.argv)
