"""Environments: typed records in the reference format, file I/O, validation and stateful domains."""

from ftrl.env.gold import gold_turns
from ftrl.env.io import (
    EnvAppender,
    from_hf_dataset,
    iter_rows,
    read_envs,
    row_to_environment,
    to_hf_dataset,
    write_envs,
)
from ftrl.env.record import SCENARIOS, Domain, Environment, tool_name

__all__ = [
    "SCENARIOS",
    "Domain",
    "EnvAppender",
    "Environment",
    "from_hf_dataset",
    "gold_turns",
    "iter_rows",
    "read_envs",
    "row_to_environment",
    "to_hf_dataset",
    "tool_name",
    "write_envs",
]
