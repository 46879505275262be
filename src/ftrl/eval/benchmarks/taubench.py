"""tau-bench (Yao et al. 2024): a tool agent serves a simulated user under a domain policy (airline, retail).

The protocol follows the FTRL paper's `evaluation_taubench.py` and tau-bench's own `Env`:

- the agent's system prompt is the domain's `wiki.md`; the agent may make one tool call per reply (extra calls
  are dropped); its tools run in the isolated runtime against the episode's copy of the domain database;
- the simulated user is any policy, prompted with the task's `instruction` (the paper uses GPT-4o through an
  OpenAI-compatible endpoint); it opens the conversation, answers every agent text reply, and ends the
  conversation by saying `###STOP###`; calling `transfer_to_human_agents` also ends it;
- at most `max_turns` (30) agent replies; a conversation that has not ended by then scores 0 (as in both).

Reward (tau-bench `calculate_reward`): 1 when the database hash at the end equals the hash after replaying the
task's gold actions on a fresh copy (terminating tools skipped) AND every required output string was said by
the agent: `output.lower()` is a substring of some agent text reply (a reply without tool calls, tau-bench's
"respond" action) lower-cased with commas removed. pass^1 is the mean reward; over k trials pass^k is tau-bench's
unbiased estimator, the mean over tasks of C(c, k) / C(n, k) with c successes out of n trials.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from math import comb
from pathlib import Path
from typing import Any

from ftrl.env.domains import EnvSource, is_domain_folder, load_domain_folder, load_source
from ftrl.env.record import Environment
from ftrl.eval.benchmarks.common import (
    AgentSpec,
    Conversation,
    ResultLog,
    agent_for,
    mean,
    play_together,
    text_of,
    write_summary,
)
from ftrl.jsonl import DataError
from ftrl.rollout.policy import Message, Policy
from ftrl.runtime.protocol import ToolRunner

MAX_TURNS = 30
STOP = "###STOP###"
TERMINATE_TOOLS = ("transfer_to_human_agents",)
AGENT_GREETING = "Hi! How can I help you today?"
USER_SYSTEM_PROMPT = (
    "You are a user interacting with an agent.\n\nInstruction: {instruction}\nRules:\n"
    "- Just generate one line at a time to simulate the user's message.\n"
    "- Do not give away all the instruction at once. Only provide the information that is necessary for the "
    "current step.\n"
    "- Do not hallucinate information that is not provided in the instruction. For example, if the agent asks "
    "for the order id but it is not mentioned in the instruction, do not make up an order id, just say you do "
    "not remember or have it.\n"
    "- If the instruction goal is satisified, generate '###STOP###' as a standalone message without anything "
    "else to end the conversation.\n"
    "- Do not repeat the exact instruction in the conversation. Instead, use your own words to convey the same "
    "information.\n"
    "- Try to make the conversation as natural as possible, and stick to the personalities in the instruction."
)


@dataclass
class TauTask:
    """One task: its environment (domain tools, wiki prompt) and what the reward needs."""

    index: int
    env: Environment

    @property
    def domain(self) -> str:
        return str(self.env.domain)

    @property
    def instruction(self) -> str:
        return str(self.env.extra["instruction"])

    @property
    def actions(self) -> list[dict[str, Any]]:
        return list(self.env.gold_calls or [])

    @property
    def outputs(self) -> list[str]:
        return list(self.env.extra.get("outputs") or [])


def load_taubench(path: str | Path, limit: int | None = None) -> tuple[EnvSource, list[TauTask]]:
    """A tau-bench folder (domain sub-folders + `tasks*.jsonl`), or one tasks file of such a folder (FTRL's
    `tasks*.jsonl`: the domains are the folders beside it, found by each task's `data_source`), and its tasks in
    file order."""
    path = Path(path)
    if path.is_file():
        if not is_domain_folder(path.parent):
            raise DataError(
                path,
                None,
                None,
                "a tau-bench tasks file needs its domain folders (such as airline/ and "
                "retail/, each with codes.json, tools.json, wiki.md and the tables) beside it",
            )
        source = load_domain_folder(path.parent, [path])
        if not source.envs:
            raise DataError(path, None, None, "no tasks in it (an empty file)")
    elif path.is_dir() and not is_domain_folder(path):
        raise DataError(
            path,
            None,
            None,
            "not a tau-bench folder: it needs domain sub-folders with codes.json and tasks*.jsonl files",
        )
    else:
        source = load_source(path)
    tasks = [TauTask(index, env) for index, env in enumerate(source.envs)]
    return source, tasks[:limit] if limit is not None else tasks


def outputs_said(outputs: Sequence[str], messages: Sequence[Message]) -> dict[str, bool]:
    """For each required output: did an agent text reply contain it (tau-bench's normalisation)?"""
    replies = [
        text_of(m).lower().replace(",", "")
        for m in messages
        if m.get("role") == "assistant" and not m.get("tool_calls")
    ]
    return {output: any(output.lower() in reply for reply in replies) for output in outputs}


def replay_hash(source: EnvSource, task: TauTask, runtime: ToolRunner) -> str:
    """Database hash after running the gold actions, one by one, on a fresh copy (terminating tools skipped)."""
    with runtime.episode(**source.episode_kwargs(task.env)) as episode:
        for action in task.actions:
            function = action["function"]
            if function["name"] not in TERMINATE_TOOLS:
                episode.call(function["name"], function["arguments"])
        return episode.state_hash()


def user_conversation(task: TauTask) -> list[Message]:
    return [
        {"role": "system", "content": USER_SYSTEM_PROMPT.format(instruction=task.instruction)},
        {"role": "user", "content": AGENT_GREETING},
    ]


def play_task(
    source: EnvSource,
    task: TauTask,
    agent: AgentSpec,
    user: Policy,
    runtime: ToolRunner,
    gold_hash: str,
    max_turns: int = MAX_TURNS,
    trial: int = 0,
) -> Conversation:
    """One trial's conversation between the agent and the simulated user (a `Conversation`); returns the scored
    row."""
    policy = agent_for(agent, task)
    user_messages = user_conversation(task)
    opening = text_of((yield user, user_messages, None))
    user_messages.append({"role": "assistant", "content": opening})
    messages: list[Message] = [*task.env.messages, {"role": "user", "content": opening}]
    ended_by = "max_turns"
    with runtime.episode(**source.episode_kwargs(task.env)) as episode:
        for _ in range(max_turns):
            reply = yield policy, messages, task.env.tools
            calls = (reply.get("tool_calls") or [])[:1]
            reply = {**reply, "tool_calls": calls or None}
            messages.append(reply)
            if calls:
                function = calls[0]["function"]
                output = episode.call(function["name"], function["arguments"])
                messages.append({"role": "tool", "content": output, "tool_call_id": calls[0]["id"]})
                if function["name"] in TERMINATE_TOOLS:
                    ended_by = "transfer"
                    break
                continue
            user_messages.append({"role": "user", "content": text_of(reply)})
            answer = text_of((yield user, user_messages, None))
            user_messages.append({"role": "assistant", "content": answer})
            messages.append({"role": "user", "content": answer})
            if STOP in answer:
                ended_by = "user_stop"
                break
        final_hash = episode.state_hash()
    said = outputs_said(task.outputs, messages)
    db_match = final_hash == gold_hash
    finished = ended_by != "max_turns"
    return {
        "key": f"{task.index}/{trial}",
        "trial": trial,
        "task": task.index,
        "domain": task.domain,
        "reward": float(finished and db_match and all(said.values())),
        "db_match": db_match,
        "outputs": said,
        "ended_by": ended_by,
        "turns": sum(m["role"] == "assistant" for m in messages),
        "instruction": task.instruction,
        "messages": messages,
    }


def pass_hat_k(successes: Sequence[int], trials: int, k: int) -> float:
    """tau-bench's pass^k: mean over tasks of C(c, k) / C(n, k), c successes in n trials."""
    if not 1 <= k <= trials:
        raise ValueError(f"k must be in 1..{trials}, got {k}")
    return mean(comb(c, k) / comb(trials, k) for c in successes)


def run_taubench(
    source: EnvSource,
    tasks: Sequence[TauTask],
    agent: AgentSpec,
    user: Policy,
    out_dir: str | Path,
    runtime: ToolRunner,
    trials: int = 1,
    max_turns: int = MAX_TURNS,
    in_flight: int = 8,
) -> dict[str, Any]:
    """Run every (trial, task) not yet in `out_dir/results.jsonl`, `in_flight` conversations at a time, then
    write and return the summary."""
    with ResultLog(out_dir) as log:
        todo = [(trial, task) for trial in range(trials) for task in tasks if not log.done(f"{task.index}/{trial}")]
        gold = {task.index: replay_hash(source, task, runtime) for _, task in todo}
        log.expect(len(todo), "tau-bench")
        conversations = (
            play_task(source, task, agent, user, runtime, gold[task.index], max_turns, trial) for trial, task in todo
        )
        play_together(conversations, log.add, in_flight)
        keys = {f"{task.index}/{trial}" for trial in range(trials) for task in tasks}
        rows = [row for key, row in log.rows.items() if key in keys]
    summary = summarize(rows, trials)
    summary["max_turns"] = max_turns  # the protocol's unless overridden
    header = ["domain", "tasks", *[f"pass^{k} (%)" for k in range(1, trials + 1)]]
    table = [header] + [
        [domain, summary["tasks"][domain], *[summary["pass_hat_k"][str(k)][domain] for k in range(1, trials + 1)]]
        for domain in summary["tasks"]
    ]
    write_summary(out_dir, summary, table, "tau-bench")
    return summary


def summarize(rows: Sequence[dict[str, Any]], trials: int) -> dict[str, Any]:
    """pass^k (percent) per domain and overall, from per-trial rows; tasks missing a trial count as failures."""
    successes: dict[str, dict[int, int]] = {}
    for row in rows:
        per_domain = successes.setdefault(row["domain"], {})
        per_domain[row["task"]] = per_domain.get(row["task"], 0) + int(row["reward"] == 1.0)
    overall = {(d, t): c for d, tasks in successes.items() for t, c in tasks.items()}
    groups: dict[str, dict[Any, int]] = {**successes, "overall": overall}
    return {
        "benchmark": "tau-bench",
        "trials": trials,
        "tasks": {group: len(tasks) for group, tasks in groups.items()},
        "pass_hat_k": {
            str(k): {group: 100 * pass_hat_k(list(c.values()), trials, k) for group, c in groups.items()}
            for k in range(1, trials + 1)
        },
        "failed_outputs": sorted({row["task"] for row in rows if not all(row["outputs"].values())}),
    }


@dataclass
class GoldAgent:
    """Replays the task's gold actions, one per reply, then tells the user it is done.

    Passes every task whose reward needs only the database; tasks with required `outputs` fail on purpose
    (the replay never says those strings), which the summary lists under `failed_outputs`.
    """

    task: TauTask
    closing: str = "Your request has been completed."

    @classmethod
    def for_task(cls, task: TauTask) -> GoldAgent:
        return cls(task)

    def generate(self, conversations: list[list[Message]], tools: list[list[dict]] | None = None) -> list[Message]:
        replies: list[Message] = []
        for conversation in conversations:
            done = sum(m.get("role") == "tool" for m in conversation)
            if done < len(self.task.actions):
                replies.append({"role": "assistant", "content": "", "tool_calls": [self.task.actions[done]]})
            else:
                replies.append({"role": "assistant", "content": self.closing, "tool_calls": None})
        return replies


class ScriptedUser:
    """A simulated user without a model: states its instruction, then says `###STOP###` to any reply.

    Enough to drive the gold agent and tests; real evaluations use a model as the user.
    """

    def generate(self, conversations: list[list[Message]], tools: list[list[dict]] | None = None) -> list[Message]:
        replies = []
        for conversation in conversations:
            if any(m["role"] == "assistant" for m in conversation):
                content = STOP
            else:
                content = conversation[0]["content"].split("Instruction: ", 1)[1].split("\nRules:\n", 1)[0]
            replies.append({"role": "assistant", "content": content, "tool_calls": None})
        return replies
