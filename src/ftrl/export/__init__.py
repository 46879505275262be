"""Exports of ftrl data to other training stacks (verl)."""

from ftrl.export.verl import export_verl

__all__ = ["export_verl"]
