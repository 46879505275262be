"""Hostile tool code: each attack becomes a tool error, the host is untouched, and the runtime keeps serving."""

from __future__ import annotations

import os
import socket
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
def test_memory_bombs_fail(runtime, body):
    result = run_hostile(runtime, body)
    # str(MemoryError()) is empty; on a loaded machine filling memory gradually may hit the timeout first
    assert result == "an error occured when call h: " or f"timed out after {TIMEOUT:f} seconds" in result, result


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
        "import faulthandler\nfaulthandler._sigsegv()",
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
