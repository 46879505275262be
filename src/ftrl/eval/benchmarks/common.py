"""Plumbing shared by the external benchmarks: playing items against policies (`ftrl.rollout.policy.Policy`),
resumable per-item results, summaries.

Every benchmark writes `results.jsonl` (one row per finished item, keyed by `key`) and `summary.json` +
`summary.md` into its output folder. A rerun reads `results.jsonl` first and skips finished keys, so a run
killed after hours resumes where it stopped and the summary always covers every finished item.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Generator, Iterable, Sequence
from dataclasses import dataclass, field
from hashlib import sha256
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.progress import Progress

from ftrl.jsonl import JsonlAppender, atomic_path, iter_jsonl
from ftrl.progress import make_progress
from ftrl.rollout.policy import Message, Policy

RESULTS_FILE = "results.jsonl"

#: A benchmark agent: one policy for every item, or a function building one per item (gold / oracle agents).
AgentSpec = Policy | Callable[[Any], Policy]


def agent_for(agent: AgentSpec, item: Any) -> Policy:
    """The policy that plays `item`: the shared policy, or the one the factory builds for this item."""
    return agent if hasattr(agent, "generate") else agent(item)


#: What a conversation asks for next: a reply from `policy` to `messages`, offering `tools` (None: no tools).
Request = tuple[Policy, list[Message], list[dict] | None]
#: A multi-turn item played as a generator: it yields requests, is sent the replies, and returns its result row.
Conversation = Generator[Request, Message, dict[str, Any]]


def play_together(
    conversations: Iterable[Conversation], on_done: Callable[[dict[str, Any]], None], in_flight: int = 8
) -> None:
    """Play up to `in_flight` conversations at once, calling `on_done` with each result row as it finishes.

    Every round, the pending requests of all live conversations go to their policies as one batched `generate`
    per (policy, with or without tools) instead of one call per item: a local model decodes the batch together
    and a server answers it concurrently, so multi-turn benchmarks cost about one item's turns per round rather
    than the sum over items.
    """
    waiting = iter(conversations)
    live: list[tuple[Conversation, Request]] = []

    def advance(conversation: Conversation, reply: Message | None) -> None:
        try:
            request = next(conversation) if reply is None else conversation.send(reply)
        except StopIteration as finished:
            on_done(finished.value)
            return
        live.append((conversation, request))

    while True:
        while len(live) < max(1, in_flight) and (conversation := next(waiting, None)) is not None:
            advance(conversation, None)
        if not live:
            return
        groups: dict[tuple[int, bool], list[tuple[Conversation, Request]]] = {}
        for entry in live:
            policy, _, tools = entry[1]
            groups.setdefault((id(policy), tools is None), []).append(entry)
        live = []
        for (_, no_tools), members in groups.items():
            policy = members[0][1][0]
            offered = None if no_tools else [request[2] for _, request in members if request[2] is not None]
            replies = policy.generate([request[1] for _, request in members], offered)
            if len(replies) != len(members):
                raise RuntimeError(f"{type(policy).__name__} answered {len(replies)} of {len(members)} conversations")
            for (conversation, _), reply in zip(members, replies, strict=False):
                advance(conversation, reply)


def text_of(message: Message) -> str:
    """An assistant message's text; `None` content counts as empty."""
    return str(message.get("content") or "")


def fingerprint(messages: Sequence[Message]) -> str:
    """A stable key for a conversation (role and content of every message)."""
    canonical = json.dumps([[m.get("role"), m.get("content")] for m in messages], ensure_ascii=False)
    return sha256(canonical.encode("utf-8")).hexdigest()


@dataclass
class LookupPolicy:
    """Replies with a fixed text chosen by the conversation's fingerprint; unknown conversations get `default`.

    Gold agents of single-turn benchmarks (and scripted test policies) are lookups: the benchmark registers the
    gold reply for each prompt it will send, then runs the policy through the normal, batched path.
    """

    replies: dict[str, str] = field(default_factory=dict)
    default: str = ""

    def add(self, messages: Sequence[Message], reply: str) -> None:
        self.replies[fingerprint(messages)] = reply

    def generate(self, conversations: list[list[Message]], tools: list[list[dict]] | None = None) -> list[Message]:
        return [
            {"role": "assistant", "content": self.replies.get(fingerprint(c), self.default), "tool_calls": None}
            for c in conversations
        ]


class ResultLog:
    """`results.jsonl` of one benchmark run: finished rows by key, appended one flushed line at a time."""

    def __init__(self, out_dir: str | Path):
        self.path = Path(out_dir) / RESULTS_FILE
        self.rows: dict[str, dict[str, Any]] = {}
        if self.path.exists():
            for _, row in iter_jsonl(self.path, allow_torn_tail=True):
                self.rows[row["key"]] = row
        self._appender: JsonlAppender | None = None
        self._progress: Progress | None = None

    def done(self, key: str) -> bool:
        return key in self.rows

    def expect(self, pending: int, title: str) -> None:
        """Show progress (stderr: a bar on a terminal, else a line now and then) over the `pending` rows this run
        is about to add."""
        if pending and self._progress is None:
            self._progress = make_progress(Console(stderr=True))
            self._progress.add_task(title, total=pending)
            self._progress.start()

    def add(self, row: dict[str, Any]) -> None:
        if self._appender is None:
            self._appender = JsonlAppender(self.path)
        self._appender.write(row)
        self.rows[row["key"]] = row
        if self._progress is not None:
            self._progress.advance(self._progress.task_ids[0])

    def close(self) -> None:
        if self._progress is not None:
            self._progress.stop()
        if self._appender is not None:
            self._appender.close()

    def __enter__(self) -> ResultLog:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def batched(items: Sequence[Any], size: int) -> Iterable[Sequence[Any]]:
    for start in range(0, len(items), max(1, size)):
        yield items[start : start + max(1, size)]


def mean(values: Iterable[float]) -> float:
    values = list(values)
    return sum(values) / len(values) if values else 0.0


def write_summary(out_dir: str | Path, summary: dict[str, Any], table: list[list[Any]], title: str) -> None:
    """`summary.json` (atomically) and `summary.md`: a markdown table whose first row is the header."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    with atomic_path(out / "summary.json") as temporary:
        temporary.write_text(json.dumps(summary, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    header, *rows = table
    lines = [f"# {title}", "", "| " + " | ".join(map(str, header)) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(_cell(value) for value in row) + " |" for row in rows]
    (out / "summary.md").write_text("\n".join(lines) + "\n", encoding="utf-8")


def _cell(value: Any) -> str:
    return f"{value:.2f}" if isinstance(value, float) else str(value)
