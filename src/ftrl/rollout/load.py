"""From a command line's choice of model to a policy: `PolicySpec` says which and how, `load_policy` builds it.

Kept apart from the protocols in `ftrl.rollout.policy` because it imports the implementations (the endpoint policy,
the local model with torch) that themselves import those protocols; it imports each only when it is chosen.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

from ftrl.env.record import Environment
from ftrl.rollout.policy import OraclePolicy, Policy
from ftrl.settings import SamplingConfig, ServerConfig


@dataclass(kw_only=True)
class PolicySpec:
    """Which policy: `oracle`, a local model (folder, cached hub id or `embedded`), or the model `server` serves.

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
    """The policy for `spec`; the oracle needs the environments whose gold trajectories it replays."""
    if spec.model == "oracle":
        return OraclePolicy(envs)
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
