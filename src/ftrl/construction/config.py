"""Build configuration: one dataclass shared by the driver, the CLI and every backend."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

from ftrl.env.record import SCENARIOS
from ftrl.settings import SamplingConfig, ServerConfig

#: Request limits of the LLM backend (`ServerConfig` fields): its replies are long (whole tool modules), so one
#: attempt may take minutes and a request gets more retries than a rollout turn.
LLM_REQUEST_LIMITS: dict[str, Any] = {"retries": 5, "timeout_s": 300.0, "total_timeout_s": 900.0}


@dataclass(kw_only=True)
class Difficulty:
    """Knobs for how hard environments are; defaults aim at the paper's test-set statistics. Ranges are inclusive;
    the `#:` comments are the help of the flags derived from them (`ftrl demo`)."""

    #: Fewest hops of a multi-hop chain (the paper averages 5.7 sub-answers for multi-hop).
    min_hops: int = 2
    #: Most hops of a multi-hop chain.
    max_hops: int = 9
    #: Fewest independent branches of a parallel question.
    min_width: int = 2
    #: Most independent branches of a parallel question.
    max_width: int = 2
    #: Fewest hops per chain in parallel multi-hop (the paper averages 7.7 sub-answers overall).
    min_chain_hops: int = 2
    #: Most hops per chain in parallel multi-hop.
    max_chain_hops: int = 6
    #: Fewest parameters per tool after scaling (the paper averages about 7).
    min_params: int = 5
    #: Most parameters per tool after scaling.
    max_params: int = 9
    #: Fewest tools per environment; distractors fill up to a drawn count between this and --max-tools, at least
    #: --min-distractors. Like the paper's test set, this makes most tools of a single-hop environment
    #: distractors and few of a parallel multi-hop one (58% overall there).
    min_tools: int = 4
    #: Most tools per environment.
    max_tools: int = 10
    #: Fewest distractor tools per environment.
    min_distractors: int = 1
    #: Target share of distractor tools, for backends that size distractors by share (the LLM backend).
    distractor_share: float = 0.58
    #: Probability that two sub-questions with the same kind of tool share one merged tool.
    merge_probability: float = 0.6

    def __post_init__(self) -> None:
        for low, high in (
            ("min_hops", "max_hops"),
            ("min_width", "max_width"),
            ("min_chain_hops", "max_chain_hops"),
            ("min_params", "max_params"),
            ("min_tools", "max_tools"),
        ):
            if not 1 <= getattr(self, low) <= getattr(self, high):
                raise ValueError(f"need 1 <= {low} <= {high}, got {getattr(self, low)} and {getattr(self, high)}")


@dataclass(kw_only=True)
class BuildConfig:
    """What to build and how; `n` counts environments written (rejections do not count)."""

    backend: str = "procedural"
    n: int = 100
    scenarios: tuple[str, ...] = SCENARIOS
    seed: int = 0
    split: str = "train"
    domains: tuple[str, ...] | None = None
    exclude_domains: tuple[str, ...] = ()
    difficulty: Difficulty = field(default_factory=Difficulty)
    #: Runtime verification: seconds per tool call and number of worker processes.
    timeout_s: float = 10.0
    workers: int = 1
    #: Environments verified per runtime round trip (procedural backend).
    batch: int = 64
    # Options of the LLM backend (`ftrl.construction.llm`), passed through untouched by the procedural one.
    #: The chat server that writes the environments (None: no LLM backend possible).
    server: ServerConfig | None = None
    sampling: SamplingConfig = field(default_factory=lambda: SamplingConfig(temperature=0.7, max_new_tokens=4096))
    seed_questions: str | None = None
    #: Extra attempts per stage after a malformed, invalid or unverifiable reply (with the reason fed back).
    repairs: int = 1
    #: Response cache of the LLM backend (default `$FTRL_LLM_CACHE` or `~/.cache/ftrl/llm`).
    cache_dir: str | None = None

    def __post_init__(self) -> None:
        self.scenarios = tuple(self.scenarios)
        unknown = [s for s in self.scenarios if s not in SCENARIOS]
        if unknown or not self.scenarios:
            raise ValueError(f"unknown scenarios {unknown}; expected some of {', '.join(SCENARIOS)}")
        if self.split not in ("train", "test"):
            raise ValueError(f"split must be 'train' or 'test', not {self.split!r}")
        if self.n < 0:
            raise ValueError("n must be >= 0")
        self.domains = tuple(self.domains) if self.domains else None
        self.exclude_domains = tuple(self.exclude_domains)

    def identity(self) -> dict[str, Any]:
        """The fields that decide the content of environment i (a resumed build must match them), under the keys
        `<out>.build.json` files have always used."""
        data = asdict(self)
        for key in ("n", "workers", "batch", "timeout_s", "cache_dir", "server", "sampling", "repairs"):
            data.pop(key)
        data["scenarios"] = list(self.scenarios)
        data["domains"] = list(self.domains) if self.domains else None
        data["exclude_domains"] = list(self.exclude_domains)
        data["base_url"] = self.server.base_url if self.server else None
        data["model"] = self.server.model if self.server else None
        data["temperature"] = self.sampling.temperature
        return data
