"""The on-call view in the real Dagster UI, driven by headless Chromium: a script and a test.

A backfill of four call_event hours in which one hour is mostly quarantined and the latest hour
is clean; then the real `dagster-webserver` over that instance, and Chromium (Debian's
`chromium` and `chromium-driver`) reading what an on-call engineer sees: the asset overview,
the rolling check, the quarantine_rate check's partitions and the failing hour's quarantine.
Every page is asserted on before its screenshot is taken.

    .venv/bin/python -m cxone_pipeline_tests.oncall_ui docs/images   # the docs' screenshots
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path

from dagster import AssetsDefinition, DagsterInstance, materialize
from selenium import webdriver
from selenium.common.exceptions import WebDriverException
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.action_chains import ActionChains
from selenium.webdriver.common.by import By
from selenium.webdriver.remote.webdriver import WebDriver
from selenium.webdriver.remote.webelement import WebElement

from cxone_pipeline.definitions import build_definitions
from cxone_pipeline.lake.layout import partition_key
from cxone_pipeline.lake.store import LocalStore
from cxone_pipeline.settings import PROJECT_ROOT, Settings
from cxone_pipeline_tests.dagster_fixtures import call_events, closed_hour, envelope, stage
from cxone_pipeline_tests.servers import free_port, stop_process, wait_for_http

CHROMIUM = os.environ.get("CXONE_PIPELINE_CHROMIUM", "/usr/bin/chromium")
CHROMEDRIVER = os.environ.get("CXONE_PIPELINE_CHROMEDRIVER", "/usr/bin/chromedriver")
# What Chromium needs to run headless as root in a container, talking to loopback only.
CHROMIUM_FLAGS = (
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--window-size=1600,1000",
)
PAGE_TIMEOUT = 120.0  # the first page waits for the code location to load on two busy cores
BIN = Path(sys.executable).parent


@dataclass(frozen=True)
class Scenario:
    """An instance and a lake holding four curated hours, one of them failing."""

    env: dict[str, str]
    hours: list[str]
    failing: str
    failing_rate: str


def prepare(root: Path) -> Scenario:
    """Stage four hours, curate them in one backfill-like run into DAGSTER_HOME's instance."""
    home, lake = root / "dagster_home", root / "lake"
    home.mkdir(parents=True)
    shutil.copy(PROJECT_ROOT / "dagster.yaml", home / "dagster.yaml")
    hours = [closed_hour(n) for n in (5, 4, 3, 2)]
    env = {
        "DAGSTER_HOME": str(home),
        "CXONE_PIPELINE_LAKE_URL": str(lake),
        "CXONE_PIPELINE_PARTITIONS_START": partition_key(hours[0] - timedelta(hours=19)),
    }
    store = LocalStore(lake)
    for n, hour in enumerate(hours):
        stage(store, "call_event", hour, call_events(hour, prefix=f"h{n}")[:3])
    failing = hours[1]
    stage(
        store,
        "call_event",
        failing,
        [
            envelope(f"bad-{n}", failing + timedelta(minutes=n), {"customerId": f"c-{n}"}, "v7")
            for n in range(7)
        ],
    )
    stage(store, "call_event", hours[2], call_events(hours[2], prefix="drift")[3:4])
    definitions = build_definitions(Settings.from_env(env))
    curate = [
        a
        for a in definitions.assets or []
        if isinstance(a, AssetsDefinition) and a.node_def.name == "curate_call_event"
    ]
    with DagsterInstance.from_config(str(home)) as instance:
        result = materialize(
            curate,
            instance=instance,
            resources=definitions.resources,
            tags={
                "dagster/asset_partition_range_start": partition_key(hours[0]),
                "dagster/asset_partition_range_end": partition_key(hours[-1]),
            },
        )
    assert result.success
    return Scenario(env, [partition_key(h) for h in hours], partition_key(failing), "70.00%")


@contextmanager
def webserver(env: dict[str, str]) -> Iterator[str]:
    port = free_port()
    process = subprocess.Popen(
        [
            str(BIN / "dagster-webserver"),
            *("-w", str(PROJECT_ROOT / "workspace.yaml"), "-h", "127.0.0.1", "-p", str(port)),
        ],
        env={**os.environ, **env, "DAGSTER_DISABLE_TELEMETRY": "1"},
        cwd=PROJECT_ROOT,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        url = f"http://127.0.0.1:{port}"
        wait_for_http(f"{url}/server_info", timeout=PAGE_TIMEOUT, process=process)
        yield url
    finally:
        stop_process(process, timeout=30)


@contextmanager
def chromium() -> Iterator[WebDriver]:
    profile = tempfile.mkdtemp(prefix="cxone-chromium-")
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for flag in (*CHROMIUM_FLAGS, f"--user-data-dir={profile}"):
        options.add_argument(flag)
    driver = webdriver.Chrome(service=Service(CHROMEDRIVER), options=options)
    try:
        yield driver
    finally:
        driver.quit()
        shutil.rmtree(profile, ignore_errors=True)


def page_text(driver: WebDriver) -> str:
    try:
        return driver.find_element(By.TAG_NAME, "body").text
    except WebDriverException:
        return ""


def wait_until(driver: WebDriver, what: str, ready: Callable[[str], bool], timeout: float) -> str:
    """Poll the rendered text until `ready(text)`; the text, or AssertionError naming `what`."""
    deadline = time.monotonic() + timeout
    text = ""
    while time.monotonic() < deadline:
        text = page_text(driver)
        if ready(text):
            return text
        time.sleep(0.5)
    raise AssertionError(f"the page never showed {what}; it showed:\n{text[-3000:]}")


def wait_for_texts(driver: WebDriver, *texts: str, timeout: float = 60.0) -> str:
    return wait_until(
        driver, " and ".join(map(repr, texts)), lambda t: all(x in t for x in texts), timeout
    )


def element_with_text(driver: WebDriver, text: str) -> WebElement:
    return driver.find_element(By.XPATH, f"//*[normalize-space(text())={text!r}]")


def open_page(driver: WebDriver, url: str, *texts: str, timeout: float = 60.0) -> str:
    driver.get(url)
    return wait_for_texts(driver, *texts, timeout=timeout)


def tour(driver: WebDriver, url: str, scenario: Scenario, shots: Path | None) -> None:
    """Assert, page by page, that the failing hour is visible; save screenshots into `shots`."""

    def shot(name: str) -> None:
        if shots is not None:
            driver.save_screenshot(str(shots / f"{name}.png"))

    curated = f"{url}/assets/curated/call_event"
    # Asset overview: the latest hour passed every per-hour check, and the rolling check fails.
    open_page(
        driver, curated, "Latest check results", "Curated zone of call_event", timeout=PAGE_TIMEOUT
    )
    latest = element_with_text(driver, "Latest check results").find_element(By.XPATH, "..")
    failed = latest.find_element(
        By.XPATH, ".//*[@aria-label='cancel']/ancestor::*[contains(@class, 'popover-target')]"
    )
    ActionChains(driver).move_to_element(failed).click().perform()
    wait_for_texts(
        driver,
        "Failed checks",
        "recent_quarantine_rate",
        # The latest materialization's metadata, on the same page, names the failing hour.
        "recent_failing_hours",
        f"{scenario.failing}: {scenario.failing_rate} (7 of 10)",
    )
    shot("oncall-overview")

    # The rolling check names the failing hour and its rate.
    open_page(
        driver,
        f"{curated}?view=checks&checkDetail=recent_quarantine_rate",
        f"{scenario.failing} ({scenario.failing_rate})",
    )
    shot("oncall-recent-check")

    # The per-hour check: failed in the list, and per partition in its Partitions tab.
    open_page(driver, f"{curated}?view=checks&checkDetail=quarantine_rate", "Partitions")
    checks_list = wait_for_texts(driver, "quarantine_rate\nFailed")
    assert "unique_event_ids\nSucceeded" in checks_list, checks_list
    # The check's own Partitions tab, after its Execution history tab (the asset has one too).
    driver.find_element(
        By.XPATH,
        "//*[normalize-space(text())='Execution history']"
        "/following::*[normalize-space(text())='Partitions'][1]",
    ).click()
    wait_for_texts(driver, "Failed (1)", f"Passed ({len(scenario.hours) - 1})")
    element_with_text(driver, scenario.failing).click()
    wait_for_texts(driver, f"({scenario.failing_rate}) were quarantined")
    shot("oncall-check-partitions")

    # The failing hour's quarantine: top reasons and samples in its metadata.
    open_page(
        driver,
        f"{url}/assets/quarantine/call_event?view=partitions&partition={scenario.failing}",
        "top_reasons",
        '"count": 7',
        '"event_id": "bad-0"',
    )
    shot("oncall-quarantine-hour")

    # Lineage tells the zones apart by their group boxes, not by badges: staging/call_event
    # feeds curated/call_event and quarantine/call_event, each titled call_event.
    open_page(
        driver,
        f"{url}/assets/staging/call_event?view=lineage",
        "call_event\nstaging",
        "curated",
        "quarantine",
    )
    shot("zones-lineage")

    # Search names the zone of each asset and group.
    open_page(driver, f"{url}/assets", "curated / call_event")
    element_with_text(driver, "Search").click()
    driver.switch_to.active_element.send_keys("call_event")
    wait_for_texts(
        driver,
        "call_event/quarantine\nAsset group",
        "quarantine / call_event\nAsset in cxone_pipeline",
        "staging / call_event\nAsset in cxone_pipeline",
    )
    shot("zones-search")


def run(shots: Path | None) -> None:
    with tempfile.TemporaryDirectory(prefix="cxone-oncall-") as root:
        scenario = prepare(Path(root))
        with webserver(scenario.env) as url, chromium() as driver:
            tour(driver, url, scenario, shots)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("shots", type=Path, help="folder for the PNG screenshots")
    args = parser.parse_args()
    args.shots.mkdir(parents=True, exist_ok=True)
    run(args.shots)
    print(f"screenshots in {args.shots}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
