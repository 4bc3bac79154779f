"""report.html opened in headless Chromium: it loads, every image renders, no console errors."""

import shutil
from pathlib import Path

from ansible_collections.servelab.vllm.plugins.module_utils.results import compare, report
from helpers.results_fixture import write_run
from selenium import webdriver
from selenium.webdriver.chrome.service import Service


def test_report_renders_in_headless_chromium(tmp_path):
    chromium, driver_path = shutil.which("chromium"), shutil.which("chromedriver")
    assert chromium and driver_path, (
        "install Debian's chromium and chromium-driver (make test does)"
    )
    run = write_run(tmp_path, points=("concurrency-1", "concurrency-2"), reps=2, n=20)
    report.write_report(run, compare.Settings(), ["median_ttft_ms"])
    options = webdriver.ChromeOptions()
    options.binary_location = chromium
    for flag in (
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-background-networking",
        "--no-first-run",
        "--disable-component-update",
        "--disable-sync",
        f"--user-data-dir={tmp_path / 'profile'}",
    ):
        options.add_argument(flag)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    driver = webdriver.Chrome(service=Service(driver_path), options=options)
    try:
        driver.get((run / "report" / "report.html").as_uri())
        assert driver.title.startswith("servelab report")
        images = driver.execute_script(
            "return Array.from(document.images).map(i => [i.alt, i.complete, i.naturalWidth])"
        )
        # The forest plot first, a run-order plot per point, then 3 CDFs and throughput
        # per point, and the sweep.
        assert len(images) == 1 + 2 + 2 * 4 + 1
        assert images[0][0] == "decision"
        assert all(done and width > 0 for _, done, width in images), images
        errors = [e for e in driver.get_log("browser") if e["level"] == "SEVERE"]
        assert errors == []
        tables = driver.find_elements("tag name", "table")
        assert len(tables) == 4  # a comparison per point, the sweep, the blocks in run order
    finally:
        driver.quit()


def test_the_history_page_renders_in_headless_chromium_with_its_links(tmp_path):
    """make vllm-history's page: one inline SVG a primary metric, each run's point a link
    to that run's report, which exists; no console errors."""
    from ansible_collections.servelab.vllm.plugins.module_utils.results import history, trend

    for i in range(6):
        run = write_run(tmp_path, run_id=f"2026120{i + 1}T020000Z-abcdef123456", reps=2, n=20,
                        seed=i)  # fmt: skip
        report.write_report(run, compare.Settings(), ["median_ttft_ms"])
    out = trend.history_report(tmp_path, history.Filters(), ["median_ttft_ms", "median_tpot_ms"])
    chromium, driver_path = shutil.which("chromium"), shutil.which("chromedriver")
    assert chromium and driver_path, "install Debian's chromium and chromium-driver"
    options = webdriver.ChromeOptions()
    options.binary_location = chromium
    for flag in ("--headless", "--no-sandbox", "--disable-gpu", "--no-first-run",
                 f"--user-data-dir={tmp_path / 'profile'}"):  # fmt: skip
        options.add_argument(flag)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    driver = webdriver.Chrome(service=Service(driver_path), options=options)
    try:
        driver.get(Path(out["page"]).as_uri())
        assert driver.title == "servelab history"
        svgs = driver.execute_script("return document.querySelectorAll('svg').length")
        assert svgs == 2
        links = driver.execute_script(
            "return Array.from(document.querySelectorAll('svg a'))"
            ".map(a => a.getAttribute('xlink:href') || a.getAttribute('href'))"
        )
        # Each run's point of each group and of the effect, in both figures.
        assert len(links) == 6 * 3 * 2, links
        for link in set(links):
            assert (Path(out["page"]).parent / link).resolve().is_file(), link
        errors = [e for e in driver.get_log("browser") if e["level"] == "SEVERE"]
        assert errors == []
    finally:
        driver.quit()
