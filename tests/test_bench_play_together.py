"""`play_together`: multi-turn benchmark items share batched generate calls, and every item still finishes."""

from __future__ import annotations

import pytest

from ftrl.eval.benchmarks.common import Conversation, play_together


class Counting:
    """Replies `turn <k>` to every conversation; records the size of each batch and whether tools came."""

    def __init__(self) -> None:
        self.batches: list[tuple[int, bool]] = []

    def generate(self, conversations, tools=None):
        self.batches.append((len(conversations), tools is not None))
        return [{"role": "assistant", "content": f"turn {len(c)}"} for c in conversations]


def talk(name: str, policy, turns: int, tools: list | None = None) -> Conversation:
    messages = [{"role": "user", "content": name}]
    for _ in range(turns):
        messages.append((yield policy, messages, tools))
    return {"key": name, "replies": [m["content"] for m in messages[1:]]}


def test_items_of_different_lengths_share_rounds_and_all_finish():
    policy, rows = Counting(), []
    play_together([talk("a", policy, 1), talk("b", policy, 3), talk("c", policy, 2)], rows.append, in_flight=8)
    assert [row["key"] for row in rows] == ["a", "c", "b"]  # in the order they finish
    assert rows[1]["replies"] == ["turn 1", "turn 2"]
    assert policy.batches == [(3, False), (2, False), (1, False)]  # 3 rounds, not 6 calls


def test_in_flight_bounds_the_batch_and_refills_it():
    policy, rows = Counting(), []
    play_together((talk(str(k), policy, 2) for k in range(5)), rows.append, in_flight=2)
    assert len(rows) == 5
    assert max(size for size, _ in policy.batches) == 2
    assert sum(size for size, _ in policy.batches) == 10


def test_requests_with_and_without_tools_and_of_different_policies_go_separately():
    agent, user, rows = Counting(), Counting(), []
    tools = [{"type": "function", "function": {"name": "f"}}]
    conversations = [talk("x", agent, 1, tools), talk("y", agent, 1), talk("z", user, 1)]
    play_together(conversations, rows.append)
    assert sorted(agent.batches) == [(1, False), (1, True)] and user.batches == [(1, False)]
    assert len(rows) == 3


def test_a_policy_that_drops_replies_is_an_error():
    class Short:
        def generate(self, conversations, tools=None):
            return [{"role": "assistant", "content": "only one"}]

    short = Short()
    with pytest.raises(RuntimeError, match="Short answered 1 of 2"):
        play_together([talk("a", short, 1), talk("b", short, 1)], print)
