"""Issue 25, point 1: attacks of one environment's tool code on other environments, other ftrl runs and the host's
files, each asserting the safe outcome (and point 6: temp folders of killed runs are removed).

| attack                                                               | test                                         |
|----------------------------------------------------------------------|----------------------------------------------|
| kill / renice / SCHED_IDLE another run's tool process (pidfd, kill)  | test_other_runs_tool_processes_are_...       |
| the same against another worker of the same runtime                  | test_other_workers_tool_processes_are_...    |
| mkfifo / mknod (FIFO, device node, regular file)                     | test_mknod_and_mkfifo_are_refused            |
| leave a file, FIFO or folder for later environments (the oracle case)| test_nothing_left_behind_reaches_later_...   |
| read other environments' tool source through stack frames            | test_other_environments_code_is_not_...      |
| read held-out data, the project, other runs' files, /proc, /etc      | test_nothing_outside_the_stdlib_...          |
| killed runs leave ftrl-runtime-* folders                             | test_folders_of_killed_runs_are_removed_...  |
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from pathlib import Path

import pytest

from ftrl.runtime import RuntimeConfig, ToolRuntime
from ftrl.runtime.runtime import remove_abandoned_folders

REPO = Path(__file__).resolve().parents[1]
SHARED = REPO.parent / "shared"
OK = {"ok": "def ok():\n    return 'fine'"}

pytestmark = pytest.mark.skipif(
    not sys.platform.startswith("linux"), reason="the runtime's namespaces and seccomp filter are Linux's"
)


@pytest.fixture(scope="module")
def runtime():
    with ToolRuntime(RuntimeConfig(workers=1, timeout_s=10)) as rt:  # one worker: every environment shares it
        if not {"pidns", "mountns", "view", "seccomp"} <= set(rt.layers):
            pytest.skip(f"this system grants only the layers {rt.layers}")
        yield rt


def _children_of(pid: int) -> list[int]:
    found = []
    for entry in os.listdir("/proc"):
        try:
            with open(f"/proc/{entry}/stat") as stat:
                if int(stat.read().rsplit(")", 1)[1].split()[1]) == pid:
                    found.append(int(entry))
        except (OSError, ValueError, IndexError):
            continue
    return found


ATTACK = """
import json, os, signal
def attack(pids):
    outcome = {"my pid": os.getpid()}
    for pid in pids:
        for name, hit in (
            ("pidfd", lambda: signal.pidfd_send_signal(os.pidfd_open(pid), signal.SIGKILL)),
            ("renice", lambda: os.setpriority(os.PRIO_PROCESS, pid, 19)),
            ("sched_idle", lambda: os.sched_setscheduler(pid, os.SCHED_IDLE, os.sched_param(0))),
            ("kill", lambda: os.kill(pid, signal.SIGKILL)),
        ):
            try:
                hit()
                outcome[f"{name} {pid}"] = "done"
            except Exception as error:
                outcome[f"{name} {pid}"] = type(error).__name__
    try:
        os.setpriority(os.PRIO_USER, os.getuid(), 19)  # every process of this uid that the caller can see
        outcome["renice uid"] = "done"
    except Exception as error:
        outcome["renice uid"] = type(error).__name__
    try:
        outcome["proc"] = sorted(os.listdir("/proc"))
    except OSError as error:
        outcome["proc"] = type(error).__name__
    return outcome
"""
VICTIM = (
    "import os, time\ndef victim():\n    time.sleep(4)\n"
    "    return f'survived, nice {os.getpriority(os.PRIO_PROCESS, 0)}'"
)


def _attack_and_check(attacker: ToolRuntime, server_pid: int) -> dict:
    """Wait for the victim's tool process (a child of `server_pid`), attack every child of that server from
    `attacker`'s tool code, and check from the host that the victims kept their priority and policy."""
    deadline = time.monotonic() + 30
    while not _children_of(server_pid) and time.monotonic() < deadline:
        time.sleep(0.05)
    victims = _children_of(server_pid)
    assert victims
    outcome = json.loads(attacker.episode({"attack": ATTACK}).call("attack", {"pids": victims}))
    for pid in victims:
        assert os.getpriority(os.PRIO_PROCESS, pid) == 0
        assert os.sched_getscheduler(pid) == os.SCHED_OTHER
        for name in ("pidfd", "renice", "sched_idle"):
            assert outcome[f"{name} {pid}"] == "ProcessLookupError", outcome  # nobody with that pid in its namespace
        assert outcome[f"kill {pid}"] == "PermissionError"  # the audit hook, as before
    assert outcome["my pid"] == 1 and outcome["proc"] == "FileNotFoundError", outcome
    return outcome


def test_other_runs_tool_processes_are_invisible_and_unsignalable(runtime):
    """The victim runs in another process with its own runtime: another ftrl run on the same host."""
    script = (
        "import sys\nfrom ftrl.runtime import RuntimeConfig, ToolRuntime\n"
        "with ToolRuntime(RuntimeConfig(workers=1, timeout_s=30)) as rt:\n"
        "    rt.layers\n    print(rt._slots[0].process.pid, flush=True)\n"
        f"    print(rt.episode({{'victim': {VICTIM!r}}}).call('victim', {{}}), flush=True)\n"
    )
    env = {**os.environ, "PYTHONPATH": str(REPO / "src")}
    with subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, text=True, env=env) as other:
        assert other.stdout is not None
        server_pid = int(other.stdout.readline())
        _attack_and_check(runtime, server_pid)
        result = other.stdout.readline().strip()
    assert result == "survived, nice 0"


def test_other_workers_tool_processes_are_invisible_and_unsignalable():
    with ToolRuntime(RuntimeConfig(workers=2, timeout_s=30)) as runtime:
        if "pidns" not in runtime.layers:
            pytest.skip("no PID namespaces here")
        victim = runtime.episode({"victim": VICTIM}, {"pinned": True})  # stateful: pinned to one worker
        results: list[str] = []
        caller = threading.Thread(target=lambda: results.append(victim.call("victim", {})))
        caller.start()
        assert victim._slot is not None and victim._slot.process is not None
        # the victim's worker is busy, so the attack runs on the other one
        _attack_and_check(runtime, victim._slot.process.pid)
        caller.join(60)
    assert results == ["survived, nice 0"]


def test_mknod_and_mkfifo_are_refused(runtime):
    code = (
        "import os, stat\ndef make():\n    outcome = []\n"
        "    for name, hit in (('fifo', lambda: os.mkfifo('f')), ('file', lambda: os.mknod('r', stat.S_IFREG)),\n"
        "                      ('device', lambda: os.mknod('d', stat.S_IFCHR | 0o666, os.makedev(1, 3))),\n"
        "                      ('fifo outside', lambda: os.mkfifo('../outside'))):\n"
        "        try:\n            hit()\n            outcome.append(name + ' made')\n"
        "        except OSError as error:\n            outcome.append(f'{name} {error.strerror}')\n"
        "    return outcome + os.listdir('.')"
    )
    outcome = json.loads(runtime.episode({"make": code}).call("make", {}))
    assert outcome == [
        "fifo Operation not permitted",
        "file Operation not permitted",
        "device Operation not permitted",
        "fifo outside Operation not permitted",
    ]


PLANT = """
import os
def plant():
    here = os.getcwd()
    serial = int(os.path.basename(here)[1:])
    made = []
    targets = [f"../c{serial + n}" for n in range(1, 4)] + ["../marker", "/tmp/marker", "/dev/shm/marker", "marker"]
    for target in targets:
        for name, hit in (("mkfifo", os.mkfifo), ("mkdir", os.mkdir), ("open", lambda p: open(p, "w").close())):
            try:
                hit(target)
                made.append(f"{name} {target}")
            except OSError:
                pass
    return made
"""
LOOK = """
import os
def look():
    seen = {path: sorted(os.listdir(path)) for path in (".", "..")}
    open("note.txt", "w").write("mine")
    return [seen, os.path.exists("/tmp/marker")]
"""


def test_nothing_left_behind_reaches_later_environments(runtime):
    """The probe's case: a FIFO named like the next environment's folder made that environment's call fail
    (FileExistsError), and the oracle scored 96.7 instead of 100."""
    planted = json.loads(runtime.episode({"plant": PLANT}).call("plant", {}))
    assert planted == ["mkdir marker"]  # only in its own scratch, which goes with its process
    for _ in range(3):
        for state in (None, {"n": 0}):
            seen, marker = json.loads(runtime.episode({"look": LOOK}, state).call("look", {}))
            assert seen["."] == []
            assert "marker" not in json.dumps(seen) and not marker
    assert runtime.episode(OK).call("ok", {}) == "fine"


FIND = """
import sys
def find(reversed_marker):
    marker = reversed_marker[::-1]
    stack, seen, steps = [], set(), 0
    frame = sys._getframe().f_back
    while frame is not None:
        stack += [frame.f_locals, frame.f_globals]
        frame = frame.f_back
    while stack and steps < 300000:
        steps += 1
        value = stack.pop()
        if id(value) in seen or value is marker:
            continue
        seen.add(id(value))
        if isinstance(value, str):
            if marker in value:
                return "found"
        elif isinstance(value, (bytes, bytearray)):
            if marker.encode() in value:
                return "found"
        elif isinstance(value, dict):
            stack += list(value.keys()) + list(value.values())
        elif isinstance(value, (list, tuple, set, frozenset)):
            stack += list(value)
        elif not isinstance(value, type(sys)) and hasattr(value, "__dict__"):
            stack.append(vars(value))
    return "clean"
"""


def test_other_environments_code_is_not_reachable_through_frames(runtime):
    marker = f"MARKER{uuid.uuid4().hex}"
    secret = {"answer": f"def answer():\n    return 'the key is {marker}'"}
    assert runtime.episode(secret).call("answer", {}) == f"the key is {marker}"
    probe = {"find": FIND}
    arguments = {"reversed_marker": marker[::-1]}
    # a fresh child (the spare forked after the last message), a stateful one, and one forked within the same batch
    assert runtime.episode(probe).call("find", arguments) == "clean"
    assert runtime.episode(probe, {"n": 0}).call("find", arguments) == "clean"
    batch = [(runtime.episode(secret), "answer", {}), (runtime.episode(probe), "find", arguments)]
    assert runtime.call_batch(batch) == [f"the key is {marker}", "clean"]
    # the walk itself works: it finds what its own environment holds
    own = {"find": FIND + f"\nSELF = {marker[::-1][::-1]!r}\n"}
    assert runtime.episode(own).call("find", arguments) == "found"


READ = """
import os
def read(paths):
    outcome = {}
    for path in paths:
        try:
            outcome[path] = sorted(os.listdir(path)) if os.path.isdir(path) else open(path, "rb").read(64).hex()
        except OSError as error:
            outcome[path] = type(error).__name__
    return outcome
"""


def test_nothing_outside_the_stdlib_and_scratch_is_readable(runtime, tmp_path):
    other_run = tempfile.mkdtemp(prefix="ftrl-runtime-other-")
    Path(other_run, "episodes.jsonl").write_text("another run's file")
    held_out = tmp_path / "test.jsonl"
    held_out.write_text("held-out answers")
    paths = [
        str(held_out),
        str(tmp_path),
        other_run,
        str(REPO / "README.md"),
        str(REPO),
        str(SHARED),
        str(Path.home()),
        "/etc/passwd",
        "/etc/hostname",
        "/proc/1/cmdline",
        "/proc/self/environ",
        "/sys/class",
        "/work",
        "/var",
        "/dev/shm",
    ]
    try:
        outcome = json.loads(runtime.episode({"read": READ}).call("read", {"paths": paths}))
    finally:
        Path(other_run, "episodes.jsonl").unlink()
        os.rmdir(other_run)
    for path in paths:
        assert outcome[path] == "FileNotFoundError" or (path == str(Path.home()) and outcome[path] in ([], [".pyenv"]))
    # what tool code needs still works: the stdlib (extension modules included), time zones, random devices
    works = (
        "import csv, decimal, json, sqlite3, sys, time, zoneinfo, os\ndef works():\n"
        "    sqlite3.connect(':memory:').execute('select 1')\n"
        "    sys.path.append(os.path.dirname(os.__file__) + '/site-packages')\n"
        "    try:\n        import pytest\n        installed = 'visible'\n"
        "    except ImportError:\n        installed = 'hidden'\n"
        "    return [len(os.urandom(8)), len(open('/dev/urandom', 'rb').read(8)), time.localtime().tm_year > 2000,\n"
        "            str(zoneinfo.ZoneInfo('Europe/Paris')), str(decimal.Decimal(1) / 4), installed]"
    )
    assert runtime.episode({"works": works}).call("works", {}) == '[8, 8, true, "Europe/Paris", "0.25", "hidden"]'


def test_folders_of_killed_runs_are_removed_on_the_next_start():
    script = (
        "from ftrl.runtime import ToolRuntime, RuntimeConfig\nimport time\n"
        "rt = ToolRuntime(RuntimeConfig(workers=1))\n"
        "print(rt._root, rt.episode({'ok': 'def ok():\\n    return 1'}).call('ok', {}), flush=True)\ntime.sleep(60)\n"
    )
    env = {**os.environ, "PYTHONPATH": str(REPO / "src")}
    killed = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, text=True, env=env)
    assert killed.stdout is not None
    folder, answer = killed.stdout.readline().split()
    assert answer == "1"
    killed.send_signal(signal.SIGKILL)
    killed.wait()
    assert os.path.isdir(folder)
    legacy = tempfile.mkdtemp(prefix="ftrl-runtime-")  # no lock: an older ftrl's, perhaps still running
    with ToolRuntime(RuntimeConfig(workers=1)) as alive:
        long_ago = time.time() - 3600
        for root in (folder, alive._root):
            os.utime(Path(root, ".owner.lock"), (long_ago, long_ago))  # past the grace for runtimes starting up
        removed = remove_abandoned_folders(tempfile.gettempdir())  # what every new runtime does first
        assert folder in removed and not os.path.exists(folder)
        assert alive._root not in removed and os.path.isdir(alive._root)  # its process holds the lock
        assert alive.episode(OK).call("ok", {}) == "fine"
    assert os.path.isdir(legacy)
    os.rmdir(legacy)
