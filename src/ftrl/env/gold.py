"""The gold trajectory of an environment: its `gold_calls` grouped into assistant turns, defined once.

`gold_calls` is stored as a list of OpenAI tool calls or as a list of call groups (one group per turn). Two
groupings are in use, on purpose:

- as stored (`parallel=False`): a flat list is one call per turn. The oracle policy (`--model oracle`) replays
  this, so `ftrl sample` and `ftrl eval` of the oracle, and the states written from it, follow the stored order.
- in waves (`parallel=True`): a call goes one turn after the latest call whose sub-question's answer it needs
  (`extra["sub_questions"][i]["depends_on"]`, every earlier call when unknown), so independent calls share a
  turn as parallel calls do. The SFT warm start trains on this: it teaches parallel scenarios' calls in one turn.

Stored groups (a list of lists) are turns already and are kept by both.
"""

from __future__ import annotations

from typing import Any

from ftrl.env.record import Environment


def gold_turns(env: Environment, *, parallel: bool = False) -> list[list[dict[str, Any]]]:
    """The environment's gold calls grouped by assistant turn (see the module docstring for `parallel`)."""
    calls: list[Any] | None = env.gold_calls
    if not calls:
        raise ValueError(f"environment {env.extra.get('index', env.question[:60])!r} has no gold_calls to replay")
    if not parallel or any(isinstance(group, list) for group in calls):
        return [list(group) if isinstance(group, list) else [group] for group in calls]
    subs = env.extra.get("sub_questions") or []
    wave: list[int] = []
    for i in range(len(calls)):
        needs = subs[i].get("depends_on", []) if i < len(subs) else list(range(i))
        wave.append(1 + max((wave[j] for j in needs if j < i), default=-1))
    return [[call for call, w in zip(calls, wave, strict=False) if w == k] for k in range(max(wave) + 1)]
