"""From a command line's choice of model to a policy: `PolicySpec` says which and how, `load_policy` builds it.

Kept apart from the protocols in `ftrl.rollout.policy` because it imports the implementations (the endpoint policy,
the local model with torch) that themselves import those protocols; it imports each only when it is chosen.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from ftrl.env.record import Environment
from ftrl.provenance import describe_model
from ftrl.reward.spec import MatcherName
from ftrl.rollout.policy import GoldPolicy, Policy
from ftrl.settings import (
    Engine,
    Placement,
    SamplingConfig,
    ServerConfig,
    ServerOptions,
    results_identity,
    setting,
    setting_table,
)

#: Model names that replay gold trajectories: `gold` (as `ftrl bench --model gold`), and `oracle`, its earlier name.
GOLD_MODELS = ("gold", "oracle")


@dataclass(kw_only=True)
class PolicySpec:
    """Which policy: `gold` (replays gold trajectories), a local model (folder, cached hub id or `embedded`), or
    the model `server` serves.

    `batch_size` bounds the rows a local model decodes together (a server's `concurrency` bounds its requests);
    `prompt` is the tool prompt variant of local templates without native tools; `threads`, `device` and `dtype`
    place a local model; `engine` decodes it (`ftrl.rollout.hf.ENGINES`).
    """

    model: str
    server: ServerConfig | None = None
    sampling: SamplingConfig = field(default_factory=SamplingConfig)
    batch_size: int = 16
    prompt: str = "example"
    threads: int | None = None
    device: str = "auto"
    dtype: str = "auto"
    engine: str = "auto"

    def __post_init__(self) -> None:
        if self.server is not None and self.server.model != self.model:
            raise ValueError(f"the server serves {self.server.model!r}, not the model {self.model!r} of this spec")


def load_policy(spec: PolicySpec, envs: Sequence[Environment] = ()) -> Policy:
    """The policy for `spec`; `gold` needs the environments whose gold trajectories it replays."""
    if spec.model in GOLD_MODELS:
        return GoldPolicy(envs)
    if spec.server is not None:
        from ftrl.rollout.endpoint import EndpointPolicy

        return EndpointPolicy(server=spec.server, sampling=spec.sampling)
    from ftrl.rollout.hf import HFConfig, HFPolicy

    config = HFConfig(
        sampling=spec.sampling,
        max_batch=spec.batch_size,
        prompt=spec.prompt,
        threads=spec.threads,
        device=spec.device,
        dtype=spec.dtype,
        engine=spec.engine,
    )
    return HFPolicy.load(spec.model, config)


@dataclass(kw_only=True)
class PolicyOptions:
    """The options of every job that runs a policy over environments (`ftrl sample`, `ftrl eval`), declared once:
    their flags and `--config` keys derive from these fields (`ftrl.cli_config`), and so does the resume identity
    (`results_settings`)."""

    model: str = setting(
        "",
        "Model folder, cached hub id, 'embedded', 'gold' (replays gold calls; 'oracle', its earlier name, also "
        "works), or a served model name with --base-url.",
    )
    envs: str = setting("", "Environments (JSONL/Parquet file or domain folder).", results=False)
    out: str = setting("", "Output (see the command).", results=False)
    limit: int | None = setting(None, "Only the first K environments.", min=1, results=False)
    max_turns: int = setting(20, "Assistant turns per episode.", min=1)
    sampling: SamplingConfig = setting_table(SamplingConfig, "How replies are drawn.")
    batch_size: int = setting(
        16, "Episodes in flight (rows per generate call / concurrent requests).", min=1, results=False
    )
    server: ServerOptions = setting_table(ServerOptions, "The server of --model, if it is served.")
    prompt: str = setting("example", "Tool prompt variant for templates without tool support.")
    threads: int | None = setting(None, "Torch CPU threads for local models.", min=1, results=False)
    placement: Placement = setting_table(Placement, "Where a local model runs.")
    engine: Engine = setting(
        "auto",
        "Local models: kvgen (fp32, ftrl's continuous batching), int8 (kvgen over int8 per-channel weights: faster on "
        "a CPU, a different model), hf (transformers' generate) or auto (kvgen when it supports the model).",
    )

    def spec(self) -> PolicySpec:
        """The policy to run: a server's requests get `server.timeout` in all, at most 120 s an attempt."""
        return PolicySpec(
            model=self.model,
            server=self.server.config(self.model, concurrency=self.batch_size),
            sampling=self.sampling,
            batch_size=self.batch_size,
            prompt=self.prompt,
            threads=self.threads,
            device=self.placement.device,
            dtype=self.placement.dtype,
            engine=self.engine,
        )

    def results_settings(self) -> dict[str, Any]:
        """The settings that change a job's results, for its resume check: all but the fields declared with
        `results=False` (batch size, threads, the API key, the timeout, the paths), the model by content, under the
        flat keys earlier versions wrote (so their outputs still resume)."""
        values = results_identity(self)
        values |= values.pop("placement")
        sampling = values.pop("sampling")
        for key, default in (("top_p", 1.0), ("seed", 0)):  # choices added later: at their defaults, not recorded
            if sampling[key] == default:
                del sampling[key]
        values |= sampling
        server = values.pop("server")["base_url"] if self.model else None
        if values.get("engine") == "auto":
            del values["engine"]  # the default: outputs written before engines were a choice still resume
        return {**values, "model": describe_model(self.model), "base_url": server}


@dataclass(kw_only=True)
class SampleConfig(PolicyOptions):
    """`ftrl sample`: trajectory collection at temperature 1 by default; `--seed` seeds it."""

    out: str = setting("", "States file to write (JSONL, reference format; resumable).", results=False)
    sampling: SamplingConfig = setting_table(
        lambda: SamplingConfig(temperature=1.0), "How replies are drawn (collection samples at temperature 1)."
    )
    n_per_env: int = setting(1, "Episodes sampled per environment.", min=1)


@dataclass(kw_only=True)
class EvalConfig(PolicyOptions):
    """`ftrl eval`: greedy episodes by default, as the paper evaluates."""

    out: str = setting("", "Output folder: episodes.jsonl (resumable), summary.json, summary.md.", results=False)
    matcher: MatcherName = setting(
        "reference", "Sub-answer and final-answer matcher: reference (the paper's) or strict."
    )

    def results_settings(self) -> dict[str, Any]:
        """As `PolicyOptions`, with the matcher only where it is not the reference's (earlier runs resume)."""
        settings = super().results_settings()
        if settings.get("matcher") == "reference":
            del settings["matcher"]
        return settings
