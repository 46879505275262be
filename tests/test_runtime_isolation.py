"""Isolation between environments (one environment's tool code cannot change what another's sees) and secrets."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

from ftrl.runtime import RuntimeConfig, ToolRuntime

REPO = Path(__file__).resolve().parents[1]
CLEAN = {"probe": "import json\ndef probe():\n    return json.dumps({'v': 1}) + ' ' + str(len([1, 2]))"}
EXPECTED = '{"v": 1} 2'


@pytest.fixture(scope="module")
def runtime():
    with ToolRuntime(RuntimeConfig(workers=1, timeout_s=5)) as rt:  # one worker: every environment shares it
        yield rt


POISONS = {
    "builtins": "import builtins\ndef poison():\n    builtins.len = lambda x: 7\n    return 'done'",
    "stdlib-monkeypatch": "import json\ndef poison():\n"
    "    json.dumps = lambda *a, **k: '{\"poisoned\": true}'\n    return 'done'",
    "sys-modules": "import sys, types\ndef poison():\n    fake = types.ModuleType('json')\n"
    "    fake.dumps = lambda *a, **k: 'fake'\n    sys.modules['json'] = fake\n    return 'done'",
    "module-global": "import json\ndef poison():\n    json.JSONEncoder.item_separator = '|'\n    return 'done'",
}


@pytest.mark.parametrize("code", POISONS.values(), ids=POISONS.keys())
def test_one_environment_cannot_poison_the_next(runtime, code):
    poisoner = runtime.episode({"poison": code})
    assert poisoner.call("poison", "{}") == "done"
    # the same environment may see its own change only within one batch; other environments never do
    assert runtime.episode(CLEAN).call("probe", "{}") == EXPECTED
    batch = [(runtime.episode({"poison": code}), "poison", "{}"), (runtime.episode(CLEAN), "probe", "{}")]
    both = runtime.call_batch(batch)
    assert both == ["done", EXPECTED]


def test_stateful_episodes_do_not_share_interpreter_state(runtime):
    tools = {"poison": POISONS["stdlib-monkeypatch"], **CLEAN}
    first = runtime.episode(tools, {"n": 0})
    second = runtime.episode(tools, {"n": 0})
    assert first.call("poison", "{}") == "done"
    assert first.call("probe", "{}") == '{"poisoned": true} 2'  # its own episode keeps its process (and state)
    assert second.call("probe", "{}") == EXPECTED


def test_files_left_in_scratch_do_not_reach_other_environments(runtime):
    write = "import os\ndef write():\n    open('left.txt', 'w').write('x')\n    return os.getcwd()"
    look = "import os\ndef look(path):\n    return os.path.exists(path) or os.listdir('.')"
    writer = runtime.episode({"write": write, "look": look})
    cwd = writer.call_many([("write", "{}")])[0]
    assert runtime.episode({"look": look}).call("look", {"path": f"{cwd}/left.txt"}) == "[]"


READ = (
    "def read(path):\n    import os\n    if os.path.isdir(path):\n        return os.listdir(path)\n"
    "    return open(path).read()[:50]"
)


def test_tool_code_never_runs_as_root(runtime):
    uid = runtime.episode({"uid": "import os\ndef uid():\n    return os.getuid()"}).call("uid", "{}")
    if os.geteuid() == 0:
        assert "uid" in runtime.layers
        assert uid == "65534"
    else:
        assert uid == str(os.geteuid())


def _user_namespaces_refused() -> bool:
    """Probed in a subprocess: entering a namespace would change this test process for good."""
    probe = "import ctypes, sys\nsys.exit(ctypes.CDLL(None).unshare(0x10000000) != 0)"
    return subprocess.run([sys.executable, "-I", "-c", probe], check=False).returncode != 0


@pytest.mark.skipif(
    os.geteuid() != 0 and _user_namespaces_refused(),
    reason="hiding paths needs a mount namespace: root, or a kernel that allows unprivileged user namespaces",
)
def test_secrets_home_and_project_are_unreadable(runtime):
    assert "view" in runtime.layers
    episode = runtime.episode({"read": READ})
    assert "No such file" in episode.call("read", {"path": "/etc/shadow"})  # not in the tool's view at all
    for folder in {str(Path.home()), str(REPO), os.getcwd()}:
        listing = episode.call("read", {"path": folder})
        assert not any(name in listing for name in ("README.md", "pyproject.toml", ".bashrc")), (folder, listing)
    assert "Errno" in episode.call("read", {"path": str(REPO / "README.md")})
    # the stdlib stays importable even where it lives under the hidden home
    assert runtime.episode({"imp": "def imp():\n    import csv, difflib\n    return 'ok'"}).call("imp", "{}") == "ok"


def _running(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as stat:
            return stat.read().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


def test_children_die_with_their_server_even_when_stuck_in_c_code():
    import signal
    import threading
    import time

    def children_of(pid: int) -> set[int]:
        found = set()
        for entry in os.listdir("/proc"):
            try:
                with open(f"/proc/{entry}/stat") as stat:
                    if int(stat.read().rsplit(")", 1)[1].split()[1]) == pid:
                        found.add(int(entry))
            except (OSError, ValueError, IndexError):
                continue
        return found

    with ToolRuntime(RuntimeConfig(workers=1, timeout_s=60)) as runtime:
        stuck = "import re\ndef stuck():\n    return re.match(r'(a+)+$', 'a' * 60 + 'b')"
        episode = runtime.episode({"stuck": stuck})
        caller = threading.Thread(target=episode.call, args=("stuck", "{}"), daemon=True)
        caller.start()
        server = runtime._slots[0].process.pid
        deadline = time.monotonic() + 10
        while len(children_of(server)) < 2 and time.monotonic() < deadline:  # the stuck child and the spare
            time.sleep(0.05)
        orphans = children_of(server)
        assert orphans
        os.kill(server, signal.SIGKILL)
        time.sleep(1.0)
        assert [pid for pid in orphans if _running(pid)] == []
        caller.join(timeout=70)


# Run by a user that is not root: starts a runtime (after nesting user namespaces until the kernel refuses one, when
# asked to), has tool code read each path given, and prints the layers, the tool messages and the warnings.
PROBE = """
import ctypes, json, os, sys, warnings
nest, paths = sys.argv[1] == "nest", sys.argv[2:]
libc = ctypes.CDLL(None)
while nest and libc.unshare(0x10000000) == 0:
    for name, text in (("setgroups", "deny"), ("uid_map", f"{os.getuid()} {os.getuid()} 1"),
                       ("gid_map", f"{os.getgid()} {os.getgid()} 1")):
        with open(f"/proc/self/{name}", "w") as file:
            file.write(text)
from ftrl.runtime import RuntimeConfig, ToolRuntime
READ = "def read(path):\\n    import os\\n    return os.listdir(path) if os.path.isdir(path) else open(path).read()"
CAPS = "def caps():\\n    import os\\n    os.chroot('.')\\n    return 'chroot allowed'"
with warnings.catch_warnings(record=True) as caught:
    warnings.simplefilter("always")
    with ToolRuntime(RuntimeConfig(workers=2, timeout_s=10)) as runtime:
        layers = runtime.layers
        episode = runtime.episode({"read": READ, "caps": CAPS})
        results = [episode.call("read", {"path": path}) for path in paths] + [episode.call("caps", {})]
        for slot in runtime._slots:
            slot.ensure_ready()
print(json.dumps({"layers": layers, "results": results, "warnings": [str(w.message) for w in caught]}))
"""


def _run_probe_as_a_user(nest: bool, paths: list[str], home: str) -> dict:
    """Run PROBE as this user when it is not root, else as `nobody` with `home` as its home; skip with the reason
    when neither works here."""
    env = {"HOME": home, "PATH": os.defpath, "PYTHONPATH": str(REPO / "src")}
    python = [sys.executable] if os.geteuid() != 0 else _python_for_nobody(env)
    refused = "import ctypes, sys\nsys.exit(ctypes.CDLL(None).unshare(0x10000000) != 0)"
    if subprocess.run([*python, "-c", refused], env=env, cwd="/", capture_output=True).returncode != 0:
        pytest.skip("the kernel refuses unprivileged user namespaces")
    done = subprocess.run(
        [*python, "-c", PROBE, "nest" if nest else "flat", *paths],
        env=env,
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout)


def _python_for_nobody(env: dict[str, str]) -> list[str]:
    """A command that runs a Python >= 3.11 as `nobody` able to import this checkout's ftrl.runtime."""
    runuser = shutil.which("runuser") or shutil.which("runuser", path="/usr/sbin:/sbin")
    if runuser is None:
        pytest.skip("running as root without runuser: no way to run tool code as a user that is not root")
    check = "import sys, ftrl.runtime; sys.exit(sys.version_info < (3, 11))"
    for python in dict.fromkeys([sys.executable, shutil.which("python3", path=os.defpath) or sys.executable]):
        command = [runuser, "-u", "nobody", "--", "env", f"HOME={env['HOME']}", python]  # runuser resets HOME
        if subprocess.run([*command, "-c", check], env=env, cwd="/", capture_output=True).returncode == 0:
            return command
    pytest.skip("no Python >= 3.11 that the user nobody can run with this checkout's src/ (is it under /root?)")


@pytest.fixture
def user_home():
    """A home of its own for the user that runs the probe, holding a secret, removed afterwards."""
    home = tempfile.mkdtemp(prefix="ftrl-home-", dir="/tmp")
    Path(home, "secret.txt").write_text("the user's secret")
    if os.geteuid() == 0:
        for path in (home, f"{home}/secret.txt"):
            os.chown(path, 65534, 65534)
    yield home
    shutil.rmtree(home)


def test_without_root_tool_code_sees_neither_home_nor_project(user_home):
    paths = [f"{user_home}/secret.txt", user_home, str(REPO / "README.md"), str(REPO)]
    probe = _run_probe_as_a_user(nest=False, paths=paths, home=user_home)
    assert {"userns", "pidns", "netns", "mountns", "view", "seccomp"} <= set(probe["layers"])
    secret, home_listing, readme, project_listing, capabilities = probe["results"]
    assert "No such file" in secret and "No such file" in home_listing
    assert "No such file" in readme and "No such file" in project_listing
    assert "Operation not permitted" in capabilities  # the namespace's rights stay with the set-up
    assert probe["warnings"] == []


def test_without_user_namespaces_tool_code_runs_as_before_with_one_warning(user_home):
    probe = _run_probe_as_a_user(nest=True, paths=[f"{user_home}/secret.txt"], home=user_home)
    assert "userns" not in probe["layers"] and "view" not in probe["layers"]
    assert probe["results"][0] == "the user's secret"
    assert len(probe["warnings"]) == 1 and "cannot hide the user's home" in probe["warnings"][0]
