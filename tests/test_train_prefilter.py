"""A multi-megabyte state is skipped before tokenization (the length filter cannot keep it anyway)."""

from __future__ import annotations

from pathlib import Path

import pytest

from ftrl.env import Environment, read_envs, write_envs
from ftrl.train.config import make_config

LOOKUP = {"type": "function", "function": {"name": "lookup", "parameters": {"type": "object", "properties": {}}}}


def _state(question: str) -> Environment:
    return Environment(
        messages=[{"role": "user", "content": question}],
        tools=[LOOKUP],
        codes={"lookup": "def lookup():\n    return 1\n"},
        unsolved_set={"lookup": ["1"]},
        answer="1",
        data_source="self/single_hop",
        split="train",
    )


def test_huge_states_are_skipped_without_tokenizing_them(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import transformers

    from ftrl.train.tiny import build_tiny_model
    from ftrl.train.trainer import Trainer

    tiny = build_tiny_model(tmp_path / "tiny")
    states = tmp_path / "states.jsonl"
    write_envs(states, [_state("What is alpha?"), _state("x" * 3_000_000), _state("What is beta?")])
    seen: list[int] = []
    original = transformers.PreTrainedTokenizerBase.__call__

    def counting(self, text=None, *args, **kwargs):
        seen.append(len(text) if isinstance(text, str) else 0)
        return original(self, text, *args, **kwargs)

    monkeypatch.setattr(transformers.PreTrainedTokenizerBase, "__call__", counting)
    config = make_config(
        "cpu",
        model=str(tiny),
        data=str(states),
        out=str(tmp_path / "run"),
        n=2,
        batch_states=1,
        mini_batch_states=1,
        max_new_tokens=4,
    )
    trainer = Trainer(config, scorer=lambda env, text: (0.0, 0))
    assert [env.question for env in trainer.states] == ["What is alpha?", "What is beta?"]
    assert len(read_envs(states)) == 3 and max(seen) < 100_000
