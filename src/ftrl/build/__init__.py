"""Environment construction: the paper's five stages (decompose, document, integrate, scale, deploy) behind
one interface (`ftrl.build.base`), an offline procedural backend over a synthetic world, and a resumable driver.
"""

from ftrl.build.base import Backend, Draft, Rejected, Rejection, Stage, SubQuestion
from ftrl.build.config import BuildConfig, Difficulty
from ftrl.build.driver import BuildReport, build_environments

__all__ = [
    "Backend",
    "BuildConfig",
    "BuildReport",
    "Difficulty",
    "Draft",
    "Rejected",
    "Rejection",
    "Stage",
    "SubQuestion",
    "build_environments",
]
