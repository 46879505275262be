"""Where did tool-use training change the model, and which changes matter?

`compare`/`analyze_params` measure per layer and module how far the tuned weights moved from the base;
`restore` builds hybrids that keep tuned weights only in chosen parts; `run_sweep` evaluates a grid of them.
"""

from ftrl.analysis.names import ParamKey, parse_name
from ftrl.analysis.param_report import analyze_params
from ftrl.analysis.params import ChangeRow, ParamReport, compare
from ftrl.analysis.restore import RestoreResult, restore
from ftrl.analysis.spec import Spec, SpecError, parse_spec
from ftrl.analysis.sweep import run_sweep
from ftrl.analysis.weights import ModelWeights, WeightsError, open_pair

__all__ = [
    "ChangeRow",
    "ModelWeights",
    "WeightsError",
    "ParamKey",
    "ParamReport",
    "RestoreResult",
    "Spec",
    "SpecError",
    "analyze_params",
    "compare",
    "open_pair",
    "parse_name",
    "parse_spec",
    "restore",
    "run_sweep",
]
