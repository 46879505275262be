"""Build configuration: one dataclass shared by the driver, the CLI and every backend."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any, Literal

from ftrl.env.record import SCENARIOS
from ftrl.settings import SamplingConfig, ServerConfig, ServerOptions, setting, setting_table

#: Request limits of the LLM backend (`ServerConfig` fields): its replies are long (whole tool modules), so one
#: attempt may take minutes and a request gets more retries than a rollout turn.
LLM_REQUEST_LIMITS: dict[str, Any] = {"retries": 5, "timeout_s": 300.0, "total_timeout_s": 900.0}


@dataclass(kw_only=True)
class Difficulty:
    """Knobs for how hard environments are; defaults aim at the paper's test-set statistics. Ranges are inclusive;
    each field's help is the help of the flag derived from it (`ftrl build`, `ftrl demo`)."""

    min_hops: int = setting(2, "Fewest hops of a multi-hop chain (the paper averages 5.7 sub-answers for multi-hop).")
    max_hops: int = setting(9, "Most hops of a multi-hop chain.")
    min_width: int = setting(2, "Fewest independent branches of a parallel question.")
    max_width: int = setting(2, "Most independent branches of a parallel question.")
    min_chain_hops: int = setting(
        2, "Fewest hops per chain in parallel multi-hop (the paper averages 7.7 sub-answers overall)."
    )
    max_chain_hops: int = setting(6, "Most hops per chain in parallel multi-hop.")
    min_params: int = setting(5, "Fewest parameters per tool after scaling (the paper averages about 7).")
    max_params: int = setting(9, "Most parameters per tool after scaling.")
    min_tools: int = setting(
        4,
        "Fewest tools per environment; distractors fill up to a drawn count between this and --max-tools, at least "
        "--min-distractors. Like the paper's test set, this makes most tools of a single-hop environment "
        "distractors and few of a parallel multi-hop one (58% overall there).",
    )
    max_tools: int = setting(10, "Most tools per environment.")
    min_distractors: int = setting(1, "Fewest distractor tools per environment.")
    distractor_share: float = setting(
        0.58, "Target share of distractor tools, for backends that size distractors by share (the LLM backend)."
    )
    merge_probability: float = setting(
        0.6, "Probability that two sub-questions with the same kind of tool share one merged tool."
    )

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


@dataclass(kw_only=True)
class BuildOptions:
    """`ftrl build`: its flags and `--config` keys derive from these fields (`ftrl.cli_config`); `build_config`
    is what the driver takes, and the build's resume identity is that config's (`BuildConfig.identity`)."""

    out: str = setting("", "Output JSONL; an existing partial file from the same config is resumed.")
    backend: Literal["procedural", "llm"] = setting("procedural", "procedural (offline, default) or llm.")
    n: int = setting(100, "Number of environments to write.", min=1)
    scenarios: tuple[str, ...] = setting(SCENARIOS, "Scenarios to build (comma-separated or the flag repeated).")
    seed: int = setting(0, "Same seed and options give byte-identical files.")
    split: Literal["train", "test"] = setting("train", "train or test.")
    domains: tuple[str, ...] = setting((), "World domains to use (comma-separated or repeated; default: all).")
    exclude_domains: tuple[str, ...] = setting((), "World domains to hold out (comma-separated or repeated).")
    difficulty: Difficulty = setting_table(Difficulty, "How hard the environments are.")
    workers: int = setting(1, "Runtime worker processes for verification.", min=1, max=256)
    model: str | None = setting(None, "llm backend: the model the server serves.")
    server: ServerOptions = setting_table(
        lambda: ServerOptions(timeout=LLM_REQUEST_LIMITS["total_timeout_s"]), "llm backend: the server of --model."
    )
    concurrency: int = setting(8, "llm backend: parallel requests.", min=1)
    seed_questions: str | None = setting(None, "llm backend: JSONL of seed questions.")
    probe_model: str | None = setting(
        None,
        "After building, probe every environment with this local model (responses sampled and scored as "
        "`ftrl train --preset cpu` does) and keep those whose pass rate is inside --target-solve-rate.",
    )
    target_solve_rate: str = setting("0.2:0.8", "With --probe-model: the pass-rate band kept, LOW:HIGH.")
    probe_n: int = setting(4, "With --probe-model: responses sampled per environment.", min=2)
    probe_out: str | None = setting(
        None,
        "With --probe-model: file of the environments in the band (default: OUT with .probed before its suffix); "
        "every environment with its pass_rate goes to PROBE_OUT.probe.jsonl.",
    )

    def build_config(self) -> BuildConfig:
        """The driver's config; list flags may also hold comma-separated names."""
        limits = LLM_REQUEST_LIMITS | {"total_timeout_s": self.server.timeout, "concurrency": self.concurrency}
        return BuildConfig(
            backend=self.backend,
            n=self.n,
            scenarios=_names(self.scenarios),
            seed=self.seed,
            split=self.split,
            domains=_names(self.domains) or None,
            exclude_domains=_names(self.exclude_domains),
            difficulty=self.difficulty,
            workers=self.workers,
            server=self.server.config(self.model, **limits),
            seed_questions=self.seed_questions,
        )


def _names(values: tuple[str, ...]) -> tuple[str, ...]:
    """`("a,b", "c")` -> `("a", "b", "c")`: a list flag given once with commas or repeated."""
    return tuple(name.strip() for value in values for name in value.split(",") if name.strip())
