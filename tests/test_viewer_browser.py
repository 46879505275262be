"""The run viewer in a real browser: headless Chromium opens the generated site from disk (file://, no server)
and a person's clicks are replayed: the episode list, a filter, an episode's tool calls and rewards, the diff's
two sides, the RL samples. Slow (`make test-slow` installs Chromium through apt and selenium through pip)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

import browser_support
from ftrl.viewer import write_site
from test_viewer import make_runs

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Path:
    reason = browser_support.missing()
    if reason:
        pytest.skip(reason)
    root = tmp_path_factory.mktemp("viewer")
    write_site([make_runs(root / "runs")], root / "site")
    return root / "site"


@pytest.fixture(scope="module")
def browser(site: Path) -> Any:
    with browser_support.chromium() as driver:
        yield driver


def open_view(driver: Any, site: Path, view: str) -> None:
    """A fresh page load of one view (the same URL again would keep the page and its filters)."""
    driver.get("about:blank")
    driver.get((site / "index.html").as_uri() + "#" + view)


def rows(driver: Any, css: str) -> list[Any]:
    from selenium.webdriver.common.by import By

    return driver.find_elements(By.CSS_SELECTOR, css)


def test_episode_list_renders_and_a_filter_changes_it(site: Path, browser: Any) -> None:
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import Select

    open_view(browser, site, "episodes")
    browser_support.wait_for(browser, "#episode-list tbody tr")
    Select(browser.find_element(By.ID, "ep-run")).select_by_visible_text("base (3)")
    browser_support.wait_for(browser, "#episode-list tbody tr")
    assert len(rows(browser, "#episode-list tbody tr")) == 3
    Select(browser.find_element(By.ID, "ep-outcome")).select_by_value("correct")
    # Japan (both scenarios share its question) is answered right without a call
    assert [tr.get_attribute("data-id") for tr in rows(browser, "#episode-list tbody tr")] == ["1", "2"]
    Select(browser.find_element(By.ID, "ep-outcome")).select_by_value("")
    browser.find_element(By.ID, "ep-search").send_keys("France")
    assert [tr.get_attribute("data-id") for tr in rows(browser, "#episode-list tbody tr")] == ["0"]
    browser.find_element(By.ID, "ep-search").clear()
    browser.find_element(By.ID, "ep-f1min").send_keys("1")
    assert rows(browser, "#episode-list tbody tr") == []  # the base run scores 0 everywhere
    assert browser.find_element(By.ID, "ep-shown").text == "0"
    assert browser_support.page_errors(browser) == []


def test_an_episode_shows_its_tool_calls_rewards_errors_and_gold(site: Path, browser: Any) -> None:
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import Select

    open_view(browser, site, "episodes")
    browser_support.wait_for(browser, "#episode-list tbody tr")
    Select(browser.find_element(By.ID, "ep-run")).select_by_visible_text("base (3)")
    browser_support.wait_for(browser, "#episode-list tbody tr[data-id='0']").click()
    episode = browser_support.wait_for(browser, "#episode")
    calls = [c.text for c in episode.find_elements(By.CSS_SELECTOR, ".msg.assistant .call")]
    assert len(calls) == 1 and "capital_of" in calls[0] and "land" in calls[0]
    assert len(episode.find_elements(By.CSS_SELECTOR, ".msg.tool.error")) == 1
    rewards = [r.text for r in episode.find_elements(By.CSS_SELECTOR, ".reward")]
    assert len(rewards) == 2 and rewards[0].startswith("reward 0.00")
    gold = episode.find_element(By.CSS_SELECTOR, ".cols > div:nth-child(2)").text
    assert "capital_of" in gold and "population_of" in gold
    assert "2,100,000" in episode.find_element(By.CSS_SELECTOR, ".answers").text
    assert browser_support.page_errors(browser) == []


def test_diff_shows_both_sides(site: Path, browser: Any) -> None:
    from selenium.webdriver.common.by import By

    open_view(browser, site, "diff")
    first = browser_support.wait_for(browser, "#diff-list tbody tr")
    assert len(rows(browser, "#diff-list tbody tr")) == 3
    assert rows(browser, "#diff-list tbody tr td.pos")  # every environment improved
    first.click()
    left = browser_support.wait_for(browser, "#diff-a")
    right = browser.find_element(By.ID, "diff-b")
    assert "base" in left.text and "oracle" in right.text
    assert left.find_elements(By.CSS_SELECTOR, ".msg") and right.find_elements(By.CSS_SELECTOR, ".msg.tool")
    assert browser_support.page_errors(browser) == []


def test_overview_and_rl_samples(site: Path, browser: Any) -> None:
    from selenium.webdriver.common.by import By

    open_view(browser, site, "overview")
    scores = browser_support.wait_for(browser, "#scores")
    assert "n/a" in scores.text  # the base run's single_hop made no call: no precision, not 100
    assert len(rows(browser, "#overview svg polyline")) >= 3  # training curves
    assert "oracle - base" in browser.find_element(By.ID, "pairs").text
    open_view(browser, site, "samples")
    response = browser_support.wait_for(browser, ".resp")
    assert "reward +1.00" in response.text and "advantage +0.700" in response.text
    assert browser_support.page_errors(browser) == []
