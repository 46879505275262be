"""Hostile tool code: each attack becomes a tool error, the host is untouched, and the runtime keeps serving."""

from __future__ import annotations

import os
import signal
import socket
import threading
import uuid

import pytest

from ftrl.runtime import RuntimeConfig, ToolRuntime

TIMEOUT = 2.0
OK = {"ok": "def ok():\n    return 'fine'"}


@pytest.fixture(scope="module")
def runtime():
    with ToolRuntime(RuntimeConfig(workers=2, timeout_s=TIMEOUT, kill_grace_s=0.5)) as rt:
        yield rt


def run_hostile(runtime: ToolRuntime, body: str) -> str:
    """Run `def h(): <body>` and check that a normal call on every worker still works afterwards."""
    code = "import os, sys, re, socket, subprocess\ndef h():\n" + "".join(f"    {line}\n" for line in body.splitlines())
    result = runtime.episode({"h": code}).call("h", "{}")
    assert result.startswith("an error occured when call h: "), result
    follow_up = runtime.episode(OK)
    assert runtime.call_batch([(follow_up, "ok", "{}")] * 4) == ["fine"] * 4
    return result


@pytest.mark.parametrize(
    "body",
    [
        "while True:\n    pass",
        "return re.match(r'(a+)+$', 'a' * 40 + 'b')",
        "return 10 ** 10 ** 8",
        "while True:\n    try:\n        n = 0\n        while True:\n            n += 1\n"
        "    except BaseException:\n        pass",
    ],
    ids=["python-loop", "catastrophic-regex", "huge-pow", "swallows-timeout"],
)
def test_runaway_code_times_out(runtime, body):
    assert f"timed out after {TIMEOUT:f} seconds" in run_hostile(runtime, body)


@pytest.mark.parametrize(
    "body",
    ["x = bytearray(10 ** 11)", "chunks = []\nwhile True:\n    chunks.append(bytearray(10 ** 7))"],
    ids=["one-shot", "gradual"],
)
def test_memory_bombs_fail_with_a_clear_message(runtime, body):
    result = run_hostile(runtime, body)
    # Python's MemoryError has no text of its own; on a loaded machine filling memory gradually may time out first
    limit = RuntimeConfig().memory_mb
    expected = f"an error occured when call h: MemoryError: tool exceeded the runtime's memory limit ({limit} MiB)"
    assert result == expected or f"timed out after {TIMEOUT:f} seconds" in result, result


def test_code_that_runs_out_of_memory_when_loaded_is_reported(runtime):
    report = runtime.check({"big": "table = bytearray(10 ** 11)\ndef big():\n    return 1"})
    assert report == {"big": f"MemoryError: tool exceeded the runtime's memory limit ({RuntimeConfig().memory_mb} MiB)"}


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


def test_a_tool_process_killed_by_the_kernel_is_reported_as_out_of_memory():
    """The OOM killer or a cgroup limit ends a process with SIGKILL, leaving no Python error to report."""
    with ToolRuntime(RuntimeConfig(workers=1, timeout_s=60, memory_mb=512)) as runtime:
        episode = runtime.episode({"slow": "import time\ndef slow():\n    time.sleep(60)\n    return 'done'"})
        results: list[str] = []
        caller = threading.Thread(target=lambda: results.append(episode.call("slow", "{}")))
        caller.start()
        server = runtime._slots[0].process.pid
        while caller.is_alive():  # until the child running the call is among those killed (a spare may go first)
            for child in _children_of(server):
                os.kill(child, signal.SIGKILL)
            caller.join(0.1)
    expected = "tool process was killed (SIGKILL), most likely out of memory (the runtime's limit is 512 MiB)"
    assert results == [f"an error occured when call slow: {expected}"]


@pytest.mark.parametrize(
    "body",
    [
        "while True:\n    os.fork()",
        "subprocess.Popen(['true'])",
        "os.system('true')",
        "os.posix_spawn('/bin/true', ['true'], {})",
    ],
    ids=["fork-bomb", "popen", "system", "posix-spawn"],
)
def test_no_new_processes(runtime, body):
    assert "not allowed" in run_hostile(runtime, body)


@pytest.mark.parametrize(
    "template",
    [
        "open('{path}', 'w').write('x')",
        "os.close(os.open('{path}', os.O_WRONLY | os.O_CREAT))",
        "open('../../../../../..{path}', 'a').write('x')",
    ],
    ids=["open", "os-open", "relative-escape"],
)
def test_no_writes_outside_scratch(runtime, template):
    path = f"/tmp/pwned-{uuid.uuid4().hex}"
    run_hostile(runtime, template.format(path=path))
    assert not os.path.exists(path)


def test_scratch_is_cwd_and_cleaned_between_calls(runtime):
    code = (
        "import os\ndef scribble():\n    before = os.listdir('.')\n    open('note.txt', 'w').write('x')\n"
        "    return before"
    )
    episode = runtime.episode({"scribble": code})
    assert [episode.call("scribble", "{}") for _ in range(4)] == ["[]"] * 4


def test_no_network(runtime):
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen()
        listener.settimeout(0.5)
        port = listener.getsockname()[1]
        run_hostile(runtime, f"socket.create_connection(('127.0.0.1', {port}), timeout=1)")
        with pytest.raises(TimeoutError):
            listener.accept()


@pytest.mark.parametrize(
    "body",
    [
        "os._exit(0)",
        "sys.exit(3)",
        "import ctypes\nctypes.string_at(0)",
        "import faulthandler\nfaulthandler._read_null()",
        "def f(n):\n    return f(n + 1)\nreturn f(0)",
        "sys.setrecursionlimit(10 ** 7)\ndef f(n):\n    return f(n + 1)\nreturn f(0)",
        "os.kill(os.getppid(), 9)",
        "import gc\nreturn len(gc.get_objects())",
    ],
    ids=["os-exit", "sys-exit", "ctypes", "segfault", "recursion", "stack-overflow", "kill-parent", "gc-introspection"],
)
def test_crashes_and_escapes_are_contained(runtime, body):
    run_hostile(runtime, body)


def test_output_floods_stay_in_the_worker(runtime, capfd):
    run_hostile(runtime, "while True:\n    print('x' * 10000)")
    run_hostile(runtime, "while True:\n    os.write(1, b'y' * 10000)\n    os.write(2, b'z' * 10000)")
    out, err = capfd.readouterr()
    assert "xxxx" not in out + err and "yyyy" not in out + err and "zzzz" not in out + err


def test_worker_limits_are_reported(runtime):
    layers = runtime.layers
    assert {"rlimits", "audit", "timer"} <= set(layers)
    if os.geteuid() == 0:
        assert "netns" in layers and "mountns" in layers
