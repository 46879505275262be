"""Environment construction: the paper's five stages (decompose, document, integrate, scale, deploy) behind
one interface (`ftrl.construction.base`), an offline procedural backend over a synthetic world, and a resumable driver.
"""

from ftrl.construction.base import Backend, Draft, Rejected, Rejection, Stage, SubQuestion
from ftrl.construction.config import BuildConfig, Difficulty
from ftrl.construction.driver import BuildReport, build_environments

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
