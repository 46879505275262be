"""`ftrl.train.config`: the resume identity derives from the configs' fields (`results=False` marks what may
change on a resume), with the same keys and values the command line assembled by hand before."""

from __future__ import annotations

from dataclasses import asdict

from ftrl.provenance import describe_model
from ftrl.train.config import SFTConfig, make_config


def test_train_identity_leaves_out_run_length_checkpointing_memory_and_paths() -> None:
    config = make_config("cpu", data="states.jsonl", out="runs/x", steps=7, seed=3)
    ignored = ("out", "data", "steps", "save_every", "keep_checkpoints", "micro_batch_size", "tool_workers")
    ignored += ("log_samples", "report_to")  # what is logged, not what is learned
    flat = asdict(config)  # the shape records had before the reward and placement became tables
    reward = flat.pop("reward")
    flat |= {"reward": reward["kind"], "matcher": reward["matcher"], "fmt": reward["fmt"], **flat.pop("placement")}
    before = {**{k: v for k, v in flat.items() if k not in ignored}, "model": describe_model(config.model)}
    assert config.results_settings() == before
    assert (before["reward"], before["matcher"], before["device"]) == ("f1", "strict", "auto")
    assert (
        make_config("cpu", steps=99, save_every=1, tool_workers=1).results_settings()
        == make_config("cpu").results_settings()
    )
    assert make_config("cpu", lr=0.5).results_settings() != make_config("cpu").results_settings()


def test_sft_identity_records_paths_as_none() -> None:
    config = SFTConfig(envs="gold.jsonl", out="runs/sft-x", epochs=3)
    flat = config.to_dict()
    flat |= flat.pop("placement")  # the shape records had before the placement became a table
    before = {**flat, "model": describe_model(config.model), "envs": None, "out": None, "report_to": None}
    assert config.results_settings() == before and before["dtype"] == "auto"
    assert SFTConfig(out="elsewhere").results_settings() == SFTConfig().results_settings()
