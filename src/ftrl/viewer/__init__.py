"""The run viewer: a static site (no server, no network) over evaluations, trainings and RL samples."""

from __future__ import annotations

from pathlib import Path

from rich.console import Console

from ftrl.viewer.site import VIEWER_DIR, build_site, write_site

__all__ = ["VIEWER_DIR", "build_site", "view_output", "write_site"]


def view_output(folder: str | Path, console: Console | None = None) -> Path | None:
    """The viewer every command writes into its output (`FOLDER/viewer/index.html`). A run that finished is
    not failed by its viewer: a problem is reported in one line and None returned."""
    console = console or Console(stderr=True)
    target = Path(folder) / VIEWER_DIR
    try:
        page = write_site([folder], target)
    except Exception as error:  # noqa: BLE001 - the run's own results are written; the viewer is extra
        console.print(f"[yellow]viewer not written[/]: {error}")
        return None
    console.print(f"viewer: {page} (open it in a browser; no server needed)")
    return page
