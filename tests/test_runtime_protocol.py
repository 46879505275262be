"""The wire protocol between the parent, the fork server and its children: one definition (in `_worker.py`, which
the parent imports), and frames written by one side are read by the other."""

from __future__ import annotations

import json
import os
import signal
import threading

import pytest

from ftrl.runtime import _worker, runtime
from ftrl.runtime._worker import (
    ANSWER_FIELD,
    ARGUMENTS,
    CALL,
    CHECK,
    CODE_HASH,
    EPISODE,
    HEADER_BYTES,
    NAME,
    OP,
    OUTPUT,
    SOURCES,
    FrameError,
    read_frame,
    send_frame,
)


def test_parent_uses_the_workers_definitions():
    assert runtime.read_frame is _worker.read_frame and runtime.send_frame is _worker.send_frame
    assert not hasattr(runtime, "_HEADER")


def test_frames_cross_a_pipe_intact_whatever_their_size():
    read_end, write_end = os.pipe()
    os.set_blocking(read_end, False)
    os.set_blocking(write_end, False)  # as the parent's pipes: a full pipe makes send_frame wait for room
    messages = [{"n": 1}, {"text": "é" * 300_000, "list": list(range(1000))}, {"last": None}]  # 600 kB > pipe buffer
    writer = threading.Thread(target=lambda: [send_frame(write_end, message, timeout=30) for message in messages])
    writer.start()
    buffer = bytearray()
    try:
        received = [read_frame(read_end, buffer, limit=10 << 20, timeout=30) for _ in messages]
    finally:
        writer.join()
        os.close(write_end)
    assert received == messages
    assert buffer == bytearray()
    with pytest.raises(EOFError):
        read_frame(read_end, buffer, timeout=5)
    os.close(read_end)


def test_bytes_past_a_frame_wait_in_the_buffer_for_the_next_read():
    read_end, write_end = os.pipe()
    os.write(write_end, _worker.encode_frame({"a": 1}) + _worker.encode_frame({"b": 2}))
    os.close(write_end)
    buffer = bytearray()
    assert read_frame(read_end, buffer) == {"a": 1}
    assert read_frame(read_end, buffer) == {"b": 2}
    os.close(read_end)


@pytest.mark.parametrize(
    "raw, reason",
    [
        ((1 << 20).to_bytes(HEADER_BYTES, "big"), "oversized"),
        (len(b"[1, 2]").to_bytes(HEADER_BYTES, "big") + b"[1, 2]", "malformed"),
        (len(b"{no").to_bytes(HEADER_BYTES, "big") + b"{no", "malformed"),
    ],
    ids=["oversized", "not-an-object", "not-json"],
)
def test_protocol_violations_are_frame_errors(raw, reason):
    read_end, write_end = os.pipe()
    os.write(write_end, raw)
    with pytest.raises(FrameError, match=reason):
        read_frame(read_end, bytearray(), limit=1024, timeout=5)
    os.close(read_end)
    os.close(write_end)


def test_a_silent_peer_times_out():
    read_end, write_end = os.pipe()
    os.set_blocking(read_end, False)
    with pytest.raises(TimeoutError):
        read_frame(read_end, bytearray(), timeout=0.2)
    os.close(read_end)
    os.close(write_end)


def test_a_child_answers_frames_written_with_the_shared_functions(tmp_path):
    """The child's loop keeps its own copy of the framing (bound before tool code runs); it must agree with
    `send_frame`/`read_frame`, and answer in the field the parent reads for each operation."""
    code = "def double(x):\n    return x * 2"
    requests = [
        {OP: CALL, NAME: "double", CODE_HASH: "h1", ARGUMENTS: {"x": 21}, EPISODE: "e0", SOURCES: code},
        {OP: CHECK, NAME: "double", CODE_HASH: "h1", EPISODE: "e0"},
        {OP: CALL, NAME: "double", CODE_HASH: "h1", ARGUMENTS: json.dumps({"x": "ab"}), EPISODE: "e0"},
    ]
    to_child_r, to_child_w = os.pipe()
    from_child_r, from_child_w = os.pipe()
    for request in requests:
        send_frame(to_child_w, request)
    os.close(to_child_w)
    settings = {"timeout_s": 5, "memory_mb": 1024, "max_output_chars": 1000}
    child = _worker._Runner(str(tmp_path), settings, {}, {})
    previous = signal.getsignal(signal.SIGALRM)
    try:
        child.serve(to_child_r, from_child_w)  # returns at EOF
    finally:
        signal.signal(signal.SIGALRM, previous)
        os.close(to_child_r)
        os.close(from_child_w)
    buffer = bytearray()
    responses = [read_frame(from_child_r, buffer, timeout=5) for _ in requests]
    os.close(from_child_r)
    assert [response[ANSWER_FIELD[request[OP]]] for request, response in zip(requests, responses, strict=True)] == [
        "42",
        None,
        "abab",
    ]
    assert ANSWER_FIELD[CALL] == OUTPUT
