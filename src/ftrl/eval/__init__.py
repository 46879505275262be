"""Evaluation on tool-use environments (`ftrl eval`, `ftrl report`) and external benchmarks (`benchmarks/`)."""

from ftrl.eval.compare import report
from ftrl.eval.run import evaluate
from ftrl.eval.summary import summarize

__all__ = ["evaluate", "report", "summarize"]
