"""The run viewer on a large run: 10,000 episodes per evaluation, opened in headless Chromium from disk.

    python benchmarks/bench_viewer.py [--source runs/demo-quick] [--episodes 10000] [--screenshots docs] [--no-write]

The two last evaluations of `--source` (a demo or loop output: the same environments evaluated twice) are
replicated to `--episodes` episodes each (environment file included, so gold trajectories and per-turn rewards
are real), the site is written, and Chromium measures: the time to open the episode list, to apply a search
filter, to open an episode, and to open the diff; the baseline in the same run is the same site over the source's
own few episodes. Sizes are the bytes the browser loads for the list, the largest episode page and the index.
With `--screenshots DIR`, a screenshot of every view of the source's own site goes to DIR (the README's).
Needs chromium, chromium-driver (apt) and selenium (pip): `make install-browser`.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))

import browser_support  # noqa: E402
from _common import write_results_section  # noqa: E402
from ftrl.env import read_envs, write_envs  # noqa: E402
from ftrl.eval.summary import summarize  # noqa: E402
from ftrl.jsonl import iter_jsonl  # noqa: E402
from ftrl.viewer.data import load_runs  # noqa: E402
from ftrl.viewer.site import build_site  # noqa: E402

COMMAND = "python benchmarks/bench_viewer.py --source runs/demo-quick --screenshots docs"
VIEWS = ("overview", "episodes", "diff", "samples")


def replicate(source: Path, folder: Path, envs_out: Path, count: int) -> None:
    """An evaluation folder with `count` episodes: episode k is the source's episode k mod n, over environment k
    (the source's environment k mod n written again)."""
    summary = json.loads((source / "summary.json").read_text())
    rows = [row for _, row in iter_jsonl(source / "episodes.jsonl")]
    rows.sort(key=lambda row: int(row["episode_id"]))
    if not envs_out.exists():
        envs = read_envs(summary["envs"])
        write_envs(envs_out, [envs[int(rows[k % len(rows)]["episode_id"])] for k in range(count)])
    folder.mkdir(parents=True, exist_ok=True)
    with (folder / "episodes.jsonl").open("w") as handle:
        copies = []
        for k in range(count):
            row = {**rows[k % len(rows)], "episode_id": str(k), "index": k}
            copies.append(row)
            handle.write(json.dumps(row, ensure_ascii=False) + "\n")
    (folder / "summary.json").write_text(json.dumps({**summary, "envs": str(envs_out), **summarize(copies)}))


def measure(driver: Any, site: Path) -> dict[str, float]:
    """Milliseconds to: show the episode list, filter it by a search, open an episode, show the diff list."""
    from selenium.webdriver.common.by import By

    timings = {}
    driver.get("about:blank")
    started = time.perf_counter()
    driver.get(site.as_uri() + "/index.html#episodes")
    browser_support.wait_for(driver, "#episode-list tbody tr", timeout=60)
    timings["open episode list"] = 1000 * (time.perf_counter() - started)
    timings["search filter (in page)"] = driver.execute_script(
        "const box = document.getElementById('ep-search'); const t = performance.now(); box.value = 'River';"
        "box.dispatchEvent(new Event('input')); return performance.now() - t;"
    )
    timings["F1 filter (in page)"] = driver.execute_script(
        "const box = document.getElementById('ep-f1min'); const t = performance.now(); box.value = '50';"
        "box.dispatchEvent(new Event('input')); return performance.now() - t;"
    )
    driver.find_element(By.ID, "ep-f1min").clear()
    driver.execute_script("document.getElementById('ep-f1min').dispatchEvent(new Event('input'))")
    started = time.perf_counter()
    driver.find_element(By.CSS_SELECTOR, "#episode-list tbody tr").click()
    browser_support.wait_for(driver, "#episode .msg")
    timings["open an episode"] = 1000 * (time.perf_counter() - started)
    driver.get("about:blank")
    started = time.perf_counter()
    driver.get(site.as_uri() + "/index.html#diff")
    browser_support.wait_for(driver, "#diff-list tbody tr", timeout=60)
    timings["open diff list"] = 1000 * (time.perf_counter() - started)
    errors = browser_support.page_errors(driver)
    if errors:
        raise SystemExit(f"the page reported errors: {errors}")
    return timings


def screenshots(driver: Any, site: Path, folder: Path) -> list[Path]:
    """One screenshot per view of `site`, an episode and a diff opened (the most changed environment)."""
    from selenium.webdriver.common.by import By

    folder.mkdir(parents=True, exist_ok=True)
    written = []
    for view in VIEWS:
        driver.get("about:blank")
        driver.get(site.as_uri() + "/index.html#" + view)
        time.sleep(0.5)
        target = {"episodes": "#episode-list tbody tr", "diff": "#diff-list tbody tr"}.get(view)
        if target:
            rows = driver.find_elements(By.CSS_SELECTOR, target)
            chosen = next(
                (row for row in rows if view != "episodes" or row.find_elements(By.CSS_SELECTOR, ".ok")), None
            )
            (chosen or rows[0]).click()
            time.sleep(0.5)
            driver.execute_script("window.scrollTo(0, 0)")
        path = folder / f"viewer-{view}.png"
        driver.save_screenshot(str(path))
        written.append(path)
    return written


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--source", type=Path, default=Path("runs/demo-quick"))
    parser.add_argument("--episodes", type=int, default=10_000)
    parser.add_argument("--screenshots", type=Path, default=None)
    parser.add_argument("--no-write", action="store_true")
    args = parser.parse_args()
    reason = browser_support.missing()
    if reason:
        raise SystemExit(reason)
    source_runs = load_runs([args.source])
    if len(source_runs.evals) < 2:
        raise SystemExit(f"{args.source}: needs two evaluations over the same environments (run `ftrl demo --quick`)")
    a, b = source_runs.evals[-2], source_runs.evals[-1]
    with tempfile.TemporaryDirectory() as scratch:
        work = Path(scratch)
        started = time.perf_counter()
        build_site(source_runs, work / "small")
        small_seconds = time.perf_counter() - started
        envs = work / "envs.jsonl"
        replicate(a.folder, work / "big" / a.name.replace("/", "_"), envs, args.episodes)
        time.sleep(0.01)  # the second evaluation is the later one
        replicate(b.folder, work / "big" / b.name.replace("/", "_"), envs, args.episodes)
        started = time.perf_counter()
        index = build_site(load_runs([work / "big"]), work / "big-site")
        big_seconds = time.perf_counter() - started
        sizes = index["evals"][-1]["bytes"]
        index_bytes = (work / "big-site" / "data" / "index.js").stat().st_size
        total = sum(p.stat().st_size for p in (work / "big-site").rglob("*") if p.is_file())
        with browser_support.chromium() as driver:
            small = measure(driver, work / "small")
            big = measure(driver, work / "big-site")
            if args.screenshots:
                for path in screenshots(driver, work / "small", args.screenshots):
                    print(f"wrote {path}")
    lines = [
        "## Run viewer (issue 27)",
        "",
        f"`{COMMAND}` (source: `ftrl demo --quick`'s two last evaluations, replicated to {args.episodes:,} episodes "
        "each; headless Chromium 156 from Debian, opened from disk; the machine was shared with other jobs, so "
        "times are under load).",
        "",
        f"Site of {args.episodes:,} + {args.episodes:,} episodes: written in {big_seconds:.1f} s "
        f"(the source's {a.summary['mean']['n']} + {b.summary['mean']['n']} episodes: {small_seconds:.2f} s), "
        f"{total / 1e6:.1f} MB in all. What the browser loads: the episode list of a run "
        f"{sizes['list'] / 1e6:.2f} MB (one compact row per episode, for filters and search), one page of "
        f"{index['page_size']} episodes at most {sizes['largest_page'] / 1e3:.0f} kB (loaded when one of its "
        f"episodes is opened), the index {index_bytes / 1e3:.0f} kB.",
        "",
        f"| ms | {args.episodes:,} episodes | {a.summary['mean']['n']} episodes (baseline) | ratio |",
        "|---|---:|---:|---:|",
    ]
    for key in big:
        lines.append(f"| {key} | {big[key]:.0f} | {small[key]:.0f} | {big[key] / max(small[key], 0.01):.1f}x |")
    lines += [
        "",
        "Open times include the browser's navigation (driver round trips); filter times are the page's own work "
        "(filtering the compact rows and rendering one page of 50), measured with `performance.now()`.",
    ]
    text = "\n".join(lines) + "\n"
    print(text)
    if not args.no_write:
        write_results_section(lines[0], text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
