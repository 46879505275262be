"""Isolation between environments (one environment's tool code cannot change what another's sees) and secrets."""

from __future__ import annotations

import os
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


@pytest.mark.skipif(os.geteuid() != 0, reason="hiding paths needs a mount namespace (root)")
def test_secrets_home_and_project_are_unreadable(runtime):
    assert "view" in runtime.layers
    episode = runtime.episode({"read": READ})
    denied = "an error occured when call read: [Errno 13] Permission denied: '/etc/shadow'"
    assert episode.call("read", {"path": "/etc/shadow"}) in ("", denied)
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
