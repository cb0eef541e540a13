"""The KPI report as a person sees it: ``ctfleet report`` against a real Prometheus with
history (fed by the real exporter, rules of monitors/rules), opened in headless Chromium
(Debian's chromium + chromium-driver, driven by Selenium), screenshotted, and checked:
the map shows the 12 regions, every KPI figure on the page equals Prometheus's at the
report's instant, the Arabic page lays out right to left, the print stylesheet prints
the failing CTs.

Chromium is required: without it these tests fail (they never skip). It runs with no
network use of its own (flags below), a fresh profile, and only opens file:// pages; the
only sockets are chromedriver's and Prometheus's, on loopback.

Screenshots: ``docs/report-fr.png`` and ``docs/report-ar.png`` (the README's), full pages
and the PDF under ``tests/artifacts/``.
"""

from __future__ import annotations

import base64
import csv
import io
import os
import re
import shutil
from pathlib import Path

import pytest

from conftest import ROOT

pytestmark = pytest.mark.component

CHROMIUM = "/usr/bin/chromium"
CHROMEDRIVER = "/usr/bin/chromedriver"
ARTIFACTS = ROOT / "tests/artifacts"
# The README's screenshots are rewritten only when asked (CTFLEET_UPDATE_DOCS=1), so an
# ordinary test run does not touch tracked files; otherwise they go with the artefacts.
DOCS = ROOT / "docs" if os.environ.get("CTFLEET_UPDATE_DOCS") == "1" else ROOT / "tests" / "artifacts"
CHROMIUM_FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                  "--disable-background-networking", "--disable-component-update", "--disable-sync",
                  "--disable-default-apps", "--disable-extensions", "--no-default-browser-check",
                  "--metrics-recording-only", "--disable-domain-reliability", "--disable-client-side-phishing-detection",
                  "--hide-scrollbars", "--force-device-scale-factor=1", "--lang=fr-FR"]


@pytest.fixture(scope="module")
def browser(tmp_path_factory):
    """Selenium on Debian's chromium and chromedriver; a missing one is a failure, not a skip."""
    for path, pkg in ((CHROMIUM, "chromium"), (CHROMEDRIVER, "chromium-driver")):
        assert os.access(path, os.X_OK), f"{path} missing: install the Debian package {pkg} (scripts/apt-packages.txt)"
    from selenium import webdriver
    from selenium.webdriver.chrome.options import Options
    from selenium.webdriver.chrome.service import Service

    profile = tmp_path_factory.mktemp("chromium-profile")
    opts = Options()
    opts.binary_location = CHROMIUM
    for flag in CHROMIUM_FLAGS + [f"--user-data-dir={profile}", "--window-size=1280,1000"]:
        opts.add_argument(flag)
    # Both paths given: Selenium Manager (which would look drivers up online) is not used.
    service = Service(executable_path=CHROMEDRIVER, log_output=str(profile.parent / "chromedriver.log"))
    driver = webdriver.Chrome(service=service, options=opts)
    try:
        yield driver
    finally:
        driver.quit()  # stops chromium and chromedriver, also when a test failed


@pytest.fixture(scope="module")
def reports(project, tmp_path_factory):
    """A Prometheus with a few minutes of the synthetic roll-out, and the report in both languages."""
    from ctfleet.lab.report_feed import feed_prometheus

    out = tmp_path_factory.mktemp("report")
    with feed_prometheus(project.registry, project.norms, ROOT, tmp_path_factory.mktemp("report-prom"), steps=4) as fed:
        at = round(fed.ended, 3)
        window = f"{int(at - fed.started) + 2}s"
        # What `ctfleet report` does (its command is tested in test_kpi_empty.py), with the
        # waivers the exporter judged with: the feed's simulated ones, labelled as such.
        from ctfleet.reports.programme_report import Names, PrometheusAPI, make_report

        for lang in ("fr", "ar"):
            make_report(PrometheusAPI(fed.prometheus.url), Names.from_project(project), out, lang=lang, range_text=window,
                        at=at, waivers=fed.norms.waivers)
        prom = fed.prometheus

        def query(promql: str) -> list[dict]:
            return prom.api("query", query=promql, time=f"{at:.3f}")["result"]

        yield {"dir": out, "at": at, "query": query, "fed": fed}


def _screenshot(driver, path: Path, height: int | None = None) -> None:
    """Full page (or its first ``height`` pixels) through the DevTools protocol."""
    width = driver.execute_script("return document.documentElement.scrollWidth")
    full = driver.execute_script("return document.documentElement.scrollHeight")
    shot = driver.execute_cdp_cmd("Page.captureScreenshot", {
        "format": "png", "captureBeyondViewport": True,
        "clip": {"x": 0, "y": 0, "width": width, "height": min(height or full, full), "scale": 1}})
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(base64.b64decode(shot["data"]))


def _open(driver, reports, lang: str) -> None:
    driver.get((reports["dir"] / f"report-{lang}.html").as_uri())
    assert driver.execute_script("return document.readyState") == "complete"


def _prometheus_figures(query) -> dict[tuple[str, str, str], float]:
    """(dimension, key, kpi) -> value, straight from the recording rules."""
    figures: dict[tuple[str, str, str], float] = {}
    from ctfleet.reports.kpi import KPIS

    for kpi in KPIS:
        figures[("national", "", kpi)] = float(query(f"ctfleet:{kpi}:count")[0]["value"][1])
        for by in ("lot", "segment", "region"):
            for s in query(f"ctfleet:{kpi}:count_by_{by}"):
                figures[(by, s["metric"][by], kpi)] = float(s["value"][1])
    figures[("national", "", "coverage")] = float(query("ctfleet:ct_coverage:avg")[0]["value"][1])
    for by in ("lot", "segment", "region"):
        for s in query(f"ctfleet:ct_coverage:avg_by_{by}"):
            figures[(by, s["metric"][by], "coverage")] = float(s["value"][1])
    return figures


def _shown_number(cell) -> int:
    """The figure as a person reads it (the cell's first number, separators dropped)."""
    from selenium.webdriver.common.by import By

    return int(re.sub(r"\D", "", cell.find_elements(By.TAG_NAME, "bdi")[0].text))


def test_french_report_in_chromium(browser, reports):
    from selenium.webdriver.common.by import By

    _open(browser, reports, "fr")
    _screenshot(browser, DOCS / "report-fr.png", height=1450)
    _screenshot(browser, ARTIFACTS / "report-fr-full.png")
    shutil.copy(reports["dir"] / "report-fr.html", ARTIFACTS / "report-fr.html")

    assert browser.execute_script("return document.documentElement.lang") == "fr"
    # The map: 12 regions, one per HCP code, each drawn with a real area on screen.
    paths = browser.find_elements(By.CSS_SELECTOR, "svg.map path.region")
    assert sorted(p.get_attribute("data-region") for p in paths) == [f"{i:02d}" for i in range(1, 13)]
    for p in paths:
        box = browser.execute_script("const b = arguments[0].getBBox(); return [b.width, b.height];", p)
        assert box[0] > 3 and box[1] > 3, p.get_attribute("data-region")
        assert p.value_of_css_property("fill") not in ("", "none")

    # Every figure on the page equals Prometheus's at the report's instant.
    expected = _prometheus_figures(reports["query"])
    cells = browser.find_elements(By.CSS_SELECTOR, "[data-kpi]")
    seen = set()
    for c in cells:
        key = (c.get_attribute("data-dim"), c.get_attribute("data-key"), c.get_attribute("data-kpi"))
        assert key in expected, key
        value = float(c.get_attribute("data-value"))
        assert value == pytest.approx(expected[key], abs=1e-6), key
        shown = _shown_number(c)
        if key[2] == "coverage":
            assert shown == round(expected[key] * 100), (key, shown)
        else:
            assert shown == int(expected[key]), (key, shown)
        seen.add(key)
    assert {k for k in expected if k[0] in ("lot", "region", "national")} <= seen
    assert len([k for k in seen if k[0] == "region" and k[2] == "cts"]) == 12

    # The map's colour is the meeting-norms share of each region.
    from ctfleet.reports.programme_report.formats import colour

    for p in paths:
        code = p.get_attribute("data-region")
        share = expected[("region", code, "cts_meeting_norms")] / expected[("region", code, "cts")]
        assert p.get_attribute("fill") == colour(share), code

    # A trend: the history Prometheus recorded shows up as lines, and it moved over the window.
    lines = browser.find_elements(By.CSS_SELECTOR, "section.chart polyline[data-line]")
    assert {l.get_attribute("data-line") for l in lines} == {"connected", "meeting_norms", "equipped", "coverage"}
    page = browser.find_element(By.TAG_NAME, "body").text
    assert "© OpenStreetMap contributors" in page and "CC BY 4.0" in page
    assert re.search(r"\(UTC\+0[01]:00\)", page) and "Africa/Casablanca" in page
    assert re.search(r"\+\d+,\d pts", page), "no trend delta shown"

    # Three outcomes that add up, waivers apart (the simulated ones of the feed, labelled).
    for dim, key, kpi in [k for k in expected if k[2] == "cts"]:
        assert sum(expected[(dim, key, k)] for k in ("cts_meeting_norms", "cts_failing", "cts_not_assessed")) == expected[(dim, key, "cts")]
        assert expected[(dim, key, "cts_meeting_norms")] <= expected[(dim, key, "cts_connected")]
    assert all(expected[("national", "", k)] > 0 for k in ("cts_meeting_norms", "cts_failing", "cts_not_assessed", "cts_with_waivers"))
    rows = browser.find_elements(By.CSS_SELECTOR, "section.waivers tr[data-waiver]")
    assert rows and all("SIMULATED" in r.text for r in rows)
    assert any(r.get_attribute("data-expiring") == "1" for r in rows)

    # Failing controls listed, with CT names.
    failing = {s["metric"]["control"] for s in reports["query"]("ctfleet_ct_control_failing")}
    shown = {d.get_attribute("data-control") for d in browser.find_elements(By.CSS_SELECTOR, "section.failing details")}
    assert shown == failing and failing


def test_print_stylesheet_prints_every_failing_ct(browser, reports):
    from selenium.webdriver.common.by import By

    _open(browser, reports, "fr")
    closed = browser.find_elements(By.CSS_SELECTOR, "section.failing details:not([open]) li")
    rendered = "return arguments[0].checkVisibility();"  # false inside a closed <details>
    assert closed and not browser.execute_script(rendered, closed[0])
    browser.execute_cdp_cmd("Emulation.setEmulatedMedia", {"media": "print"})
    try:
        assert browser.execute_script(rendered, closed[0]), "closed <details> lists do not print"
        pdf = browser.execute_cdp_cmd("Page.printToPDF", {"printBackground": True, "preferCSSPageSize": True})
    finally:
        browser.execute_cdp_cmd("Emulation.setEmulatedMedia", {"media": ""})
    data = base64.b64decode(pdf["data"])
    assert data.startswith(b"%PDF") and data.count(b"/Type /Page") - data.count(b"/Type /Pages") >= 3
    (ARTIFACTS / "report-fr.pdf").write_bytes(data)


def test_arabic_report_is_right_to_left(browser, reports, names_ar):
    from selenium.webdriver.common.by import By

    _open(browser, reports, "ar")
    _screenshot(browser, DOCS / "report-ar.png", height=1450)
    _screenshot(browser, ARTIFACTS / "report-ar-full.png")
    shutil.copy(reports["dir"] / "report-ar.html", ARTIFACTS / "report-ar.html")

    assert browser.execute_script("return document.documentElement.dir") == "rtl"
    assert browser.find_element(By.TAG_NAME, "body").value_of_css_property("direction") == "rtl"
    # Laid out right to left: a table's first column is on the right, the map's figure right of its table.
    head = browser.find_elements(By.CSS_SELECTOR, "table[data-table='region'] thead th")
    assert head[0].rect["x"] > head[-1].rect["x"]
    assert len(browser.find_elements(By.CSS_SELECTOR, "svg.map path.region")) == 12
    page = browser.find_element(By.TAG_NAME, "body").text
    for code, name in names_ar.items():
        assert name in page, code  # HCP's Arabic names, from the registry
    # Same figures as the French page.
    expected = _prometheus_figures(reports["query"])
    for c in browser.find_elements(By.CSS_SELECTOR, "[data-kpi]"):
        key = (c.get_attribute("data-dim"), c.get_attribute("data-key"), c.get_attribute("data-kpi"))
        assert float(c.get_attribute("data-value")) == pytest.approx(expected[key], abs=1e-6), key


def test_csv_and_json_carry_the_same_figures(reports, names_ar):
    import json

    doc = json.loads((reports["dir"] / "kpis.json").read_text(encoding="utf-8"))
    expected = _prometheus_figures(reports["query"])
    assert doc["national"]["cts_connected"] == expected[("national", "", "cts_connected")]
    raw = (reports["dir"] / "kpis-ar.csv").read_bytes()
    assert raw.startswith(b"\xef\xbb\xbf")  # UTF-8 BOM: Excel opens the Arabic names right
    rows = list(csv.reader(io.StringIO(raw.decode("utf-8-sig"))))
    by_code = {r[1]: r for r in rows[1:] if r[0] == "الجهة"}
    assert len(by_code) == 12
    for code, r in by_code.items():
        assert r[2] == names_ar[code] and int(r[3]) == expected[("region", code, "cts")]
    for name in ("kpis-fr.csv", "kpis-ar.csv", "kpis.json"):
        shutil.copy(reports["dir"] / name, ARTIFACTS / name)


@pytest.fixture(scope="module")
def names_ar(project):
    return {r.code: r.name_ar for r in project.national.regions.values()}
