"""The procedural backend (offline, the default): the five stages over a seeded synthetic world.

Environment `i` of a build depends only on `(seed, i)`: its scenario is `scenarios[i % len(scenarios)]` and
every stage draws from a generator seeded by `(seed, i, stage)`. Drafts are verified in batches of
`config.batch`, one runtime round trip per batch.
"""

from __future__ import annotations

from collections.abc import Iterator
from itertools import count

from ftrl.construction.base import Draft, Rejected, Rejection, Stage
from ftrl.construction.config import BuildConfig
from ftrl.construction.decompose import ProceduralDecompose, allowed_domains
from ftrl.construction.deploy import ProceduralDeploy
from ftrl.construction.document import ProceduralDocument
from ftrl.construction.integrate import Integrate
from ftrl.construction.scale import Scale
from ftrl.construction.verify import verify_each
from ftrl.construction.world import make_world
from ftrl.env.record import Environment
from ftrl.runtime.protocol import ToolRunner


class ProceduralBackend:
    """Builds verified environments from the synthetic world; needs a `ToolRuntime` (or anything with its API)."""

    name = "procedural"

    def __init__(self, config: BuildConfig, runtime: ToolRunner):
        self.config = config
        self.world = make_world(config.seed)
        domains = allowed_domains(config.domains, config.exclude_domains)
        self.stages: list[Stage] = [
            ProceduralDecompose(self.world, domains, config.difficulty),
            ProceduralDocument(self.world),
            Integrate(self.world, config.difficulty),
            Scale(self.world, domains, config.difficulty),
        ]
        self.deploy = ProceduralDeploy(self.world, runtime)
        self.runtime = runtime

    def draft(self, index: int) -> Draft:
        """Environment `index` before deployment (decomposed, documented, integrated, scaled)."""
        scenarios = self.config.scenarios
        draft = Draft(
            "", scenarios[index % len(scenarios)], index=index, seed=self.config.seed, split=self.config.split
        )
        for stage in self.stages:
            draft = stage.run(draft)
        return draft

    def build(self, config: BuildConfig, start: int = 0) -> Iterator[Environment | Rejection]:
        indices = count(start)
        while True:
            batch: list[Draft | Rejection] = []
            for index in (next(indices) for _ in range(max(1, config.batch))):
                try:
                    batch.append(self.deploy.write(self.draft(index)))
                except Rejected as rejected:
                    batch.append(
                        Rejection(
                            index, rejected.stage, rejected.reason, config.scenarios[index % len(config.scenarios)]
                        )
                    )
            drafts = [item for item in batch if isinstance(item, Draft)]
            verified = iter(verify_each(self.runtime, drafts))
            for item in batch:
                if isinstance(item, Rejection):
                    yield item
                    continue
                outcome = next(verified)
                if isinstance(outcome, Rejected):
                    yield Rejection(item.index, outcome.stage, outcome.reason, item.scenario, item.question)
                else:
                    yield outcome.to_environment()
