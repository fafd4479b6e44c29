"""The planner maps in headless Chromium: what a planner actually opens.

Debian's chromium is driven by Playwright's Python package (Playwright cannot
download its own browser here). Pages are opened from file:// URLs, offline.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import numpy as np
import pytest

from covgap import maps, pipeline
from covgap.cellstats import CellClass, class_raster
from covgap.config import load_config

pytestmark = pytest.mark.browser

CHROMIUM = "/usr/bin/chromium"
ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
        "--disable-component-update", "--no-first-run"]
SAMPLE = Path(__file__).resolve().parents[1] / "data" / "sample" / "covgap.toml"
XSS_IMG = "<img src=x onerror=alert(1)>"
XSS_SCRIPT = "</script><script>alert(1)</script>"
XSS_COMMUNE = 'Xã <b>Thử</b> & "Nghiệm"'
LAYERS = ["communes", "villages_4g", "villages_fibre", "dead_zones", "no4g_zones", "needs_measurement", "fibre", "centres",
          "fibre_plan", "measurement_plan"]


@pytest.fixture(scope="module")
def browser():
    sync_api = pytest.importorskip("playwright.sync_api")
    if not Path(CHROMIUM).exists():
        pytest.skip("chromium is not installed (make system-deps)")
    with sync_api.sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, args=ARGS)
        yield b
        b.close()


class Opened:
    """A page with everything it logged, requested and tried to show in a dialog."""

    def __init__(self, browser, path: Path):
        self.page = browser.new_page(viewport={"width": 1400, "height": 900})
        self.errors, self.requests, self.dialogs, self.failed = [], [], [], []
        self.page.on("console", lambda m: self.errors.append(m.text) if m.type == "error" else None)
        self.page.on("pageerror", lambda e: self.errors.append(str(e)))
        self.page.on("request", lambda r: self.requests.append(r.url))
        self.page.on("requestfailed", lambda r: self.failed.append(r.url))
        self.page.on("dialog", lambda d: (self.dialogs.append(d.message), d.dismiss()))
        self.url = path.resolve().as_uri()
        started = time.monotonic()
        self.page.goto(self.url)
        self.page.wait_for_selector("body[data-covgap-ready]", timeout=30_000)
        self.load_s = time.monotonic() - started

    def offline_and_clean(self) -> None:
        assert self.errors == []
        assert self.requests == [self.url] and self.failed == []
        assert self.dialogs == []

    def paths_in(self, layer: str) -> int:
        return self.page.locator(f".covgap-pane-{layer} path").count()

    def set_layer(self, label: str, on: bool) -> None:
        box = self.page.locator(".leaflet-control-layers-overlays label", has_text=label).locator("input")
        assert box.count() == 1, label
        if box.is_checked() != on:
            box.click()

    def popup_text(self) -> str:
        # A closed popup fades out for 200 ms before it leaves the DOM: wait for the one open popup.
        self.page.wait_for_function("document.querySelectorAll('.leaflet-popup-content').length === 1", timeout=5_000)
        return self.page.locator(".leaflet-popup-content").inner_text()


def _layer_label(lang: str, key: str) -> str:
    return maps.STRINGS[lang]["layer_cells_control" if key == "cells" else f"layer_{key}"]


@pytest.fixture
def hand_results(hand_project):
    return pipeline.run_pipeline(load_config(hand_project), now_s=1_790_000_000)


@pytest.fixture
def hand_maps(hand_results, tmp_path):
    return maps.write_maps(hand_results, tmp_path / "maps", lang="vi")


def _expected_counts(results) -> dict[str, int]:
    return {"communes": len(results.communes), "villages_4g": len(results.villages),
            "villages_fibre": len(results.villages), "dead_zones": len(results.zones),
            "no4g_zones": len(results.no4g_zones),
            "needs_measurement": len(results.needs_measurement), "fibre": len(results.layers.fibre),
            "centres": len(results.communes), "fibre_plan": int(results.fibre_plan.spurs.geometry.notna().sum()),
            "measurement_plan": (0 if results.measurement_plan is None
                                 else len(results.measurement_plan.days) + len(results.measurement_plan.waypoints))}


@pytest.mark.parametrize("which", ["index.html", "xa-thu-nghiem.html"])
def test_page_loads_offline_without_errors_and_every_layer_has_its_features(browser, hand_results, hand_maps, which):
    opened = Opened(browser, hand_maps[0].parent / which)
    expected = _expected_counts(hand_results)
    assert expected == {"communes": 1, "villages_4g": 3, "villages_fibre": 3, "dead_zones": 1, "no4g_zones": 1,
                        "needs_measurement": 3, "fibre": 1, "centres": 1, "fibre_plan": 2,
                        "measurement_plan": 0}
    for key in LAYERS:
        opened.set_layer(_layer_label("vi", key), True)
    opened.set_layer(_layer_label("vi", "cells"), True)
    counts = opened.page.evaluate("covgap.featureCounts()")
    for key in LAYERS:
        assert opened.paths_in(key) == expected[key] == counts[key], key
    # Cells: one image for the chosen operator view, counts in the legend as in the class raster.
    assert opened.page.locator(".covgap-pane-cells img").count() == 1
    assert opened.page.evaluate("document.querySelector('.covgap-pane-cells img').naturalWidth") > 0
    legend = opened.page.locator('.covgap-legend-section[data-layer="cells"]').inner_text()
    n = np.bincount(hand_results.classes.ravel(), minlength=6)
    for klass in CellClass:
        assert f"{maps.STRINGS['vi']['cell_' + klass.label].split(' (')[0]}" in legend
        assert f"({n[int(klass)]} ô)" in legend
    # Every layer comes off again, and its legend with it.
    for key in [*LAYERS, "cells"]:
        opened.set_layer(_layer_label("vi", key), False)
    for key in LAYERS:
        assert opened.paths_in(key) == 0, key
    assert opened.page.locator(".covgap-pane-cells img").count() == 0
    assert opened.page.locator(".covgap-legend-section").count() == 0
    assert set(opened.page.evaluate("covgap.featureCounts()").values()) == {0}
    opened.offline_and_clean()
    opened.page.close()


def test_operator_choice_swaps_the_cell_image(browser, hand_results, hand_maps):
    opened = Opened(browser, hand_maps[0])
    opened.set_layer(_layer_label("vi", "cells"), True)
    src_any = opened.page.evaluate("document.querySelector('.covgap-pane-cells img').src")
    opened.page.select_option("#covgap-operator", "MobiFone")
    assert opened.page.evaluate("covgap.operator()") == "MobiFone"
    assert opened.page.locator(".covgap-pane-cells img").count() == 1
    assert opened.page.evaluate("document.querySelector('.covgap-pane-cells img').src") != src_any
    mobi = class_raster(hand_results.op_view[hand_results.op_view["operator"] == "MobiFone"],
                        hand_results.layers.grid, hand_results.layers.inside)
    legend = opened.page.locator('.covgap-legend-section[data-layer="cells"]').inner_text()
    assert "MobiFone" in legend
    assert f"({int((mobi == int(CellClass.INSUFFICIENT)).sum())} ô)" in legend
    opened.offline_and_clean()
    opened.page.close()


def _click_village(opened: Opened, name: str) -> str:
    for key in ["dead_zones", "no4g_zones", "fibre", "centres", "needs_measurement"]:
        opened.set_layer(_layer_label(opened.page.evaluate("covgap.data.lang"), key), False)
    point = opened.page.evaluate("name => covgap.villagePoint(name)", name)
    opened.page.mouse.click(point["x"], point["y"])
    return opened.popup_text()


def test_clicking_a_village_opens_its_figures(browser, hand_maps):
    opened = Opened(browser, hand_maps[0])
    text = _click_village(opened, "Thôn Một")
    assert "Thôn Một" in text and "Xã Thử Nghiệm" in text
    assert "Số hộ\t100" in text  # households
    assert "đạt 4G" in text  # verdict
    assert "2026-03-01" in text  # last measured
    assert "Khoảng cách tới cáp quang\t0 m" in text  # the fibre line crosses the village
    opened.offline_and_clean()
    opened.page.close()


def test_search_finds_a_village_without_accents(browser, hand_maps):
    opened = Opened(browser, hand_maps[0])
    opened.page.fill("#covgap-search", "thon mot")
    hits = opened.page.locator("#covgap-search-results button")
    assert hits.count() == 1 and hits.inner_text() == "Thôn Một (Xã Thử Nghiệm)"
    hits.click()
    assert "Thôn Một" in opened.popup_text()
    opened.page.fill("#covgap-search", "khong co")
    assert opened.page.locator("#covgap-search-results li.none").count() == 1
    opened.offline_and_clean()
    opened.page.close()


def test_scorecard_panel_shows_the_four_targets(browser, hand_maps):
    opened = Opened(browser, hand_maps[0])
    rows = opened.page.locator("#covgap-scorecard tbody tr")
    assert rows.count() == 4  # each line states its evidence: no separate "measured" line
    assert "33,3%" in rows.nth(0).inner_text() and "chưa đạt" in rows.nth(0).inner_text()
    assert "48,0%" in rows.nth(2).inner_text() and "theo tuyến cáp quang" in rows.nth(2).inner_text()
    assert opened.page.locator("#covgap-commune-links a").count() == 1
    opened.page.locator("#covgap-commune-links a").click()
    opened.page.wait_for_selector("body[data-covgap-ready]")
    assert opened.page.url.endswith("/xa-thu-nghiem.html")
    assert opened.page.locator("#covgap-district-link").count() == 1
    assert opened.errors == [] and opened.dialogs == []
    opened.page.close()


def test_english_map_has_english_labels(browser, hand_results, tmp_path):
    written = maps.write_maps(hand_results, tmp_path / "en", lang="en")
    opened = Opened(browser, written[0])
    control = opened.page.locator(".leaflet-control-layers-overlays").inner_text()
    assert "Villages by 4G verdict" in control and "Dead zones" in control and "Thôn" not in control
    assert "Legend" in opened.page.locator(".covgap-legend").inner_text()
    score = opened.page.locator("#covgap-scorecard").inner_text()
    assert "4G in every village" in score and "not met" in score and "33.3%" in score
    text = _click_village(opened, "Thôn Một")
    assert "Households\t100" in text and "meets the 4G target" in text
    assert opened.page.evaluate("document.documentElement.lang") == "en"
    opened.offline_and_clean()
    opened.page.close()


@pytest.fixture
def xss_project(hand_project):
    """The hand project with hostile village and commune names."""
    d = hand_project.parent
    for name, key in (("villages.geojson", "features"), ("communes.geojson", "features")):
        data = json.loads((d / name).read_text(encoding="utf-8"))
        for f in data[key]:
            p = f["properties"]
            if name == "communes.geojson":
                p["name"] = XSS_COMMUNE
            else:
                p["commune"] = XSS_COMMUNE
                p["name"] = {"V2": XSS_IMG, "V3": XSS_SCRIPT}.get(p["village_id"], p["name"])
        (d / name).write_text(json.dumps(data, ensure_ascii=False), encoding="utf-8")
    return hand_project


def test_hostile_names_render_as_text_and_run_nothing(browser, xss_project, tmp_path):
    results = pipeline.run_pipeline(load_config(xss_project), now_s=1_790_000_000)
    written = maps.write_maps(results, tmp_path / "maps", lang="vi")
    assert [p.name for p in written] == ["index.html", "xa-b-thu-b-nghiem.html"]
    for path in written:
        html = path.read_text(encoding="utf-8")
        assert XSS_SCRIPT not in html and XSS_IMG not in html
        opened = Opened(browser, path)
        assert opened.page.title().endswith(XSS_COMMUNE if path.name != "index.html" else "Huyện Thử")
        assert opened.page.locator("img[src='x']").count() == 0
        text = _click_village(opened, XSS_IMG)
        assert XSS_IMG in text and XSS_COMMUNE in text
        opened.page.keyboard.press("Escape")
        opened.page.fill("#covgap-search", "script")
        assert opened.page.locator("#covgap-search-results button").inner_text() == f"{XSS_SCRIPT} ({XSS_COMMUNE})"
        opened.page.locator("#covgap-search-results button").click()
        assert XSS_SCRIPT in opened.popup_text()
        # The villages' tooltips and the commune list show the names literally too.
        assert XSS_COMMUNE in opened.page.locator("#covgap-panel").inner_text()
        assert opened.page.locator("#covgap-panel b, .leaflet-popup b").count() == 0
        opened.page.wait_for_timeout(300)  # give any injected handler time to fire
        opened.offline_and_clean()
        assert opened.page.evaluate("typeof window.covgap") == "object"
        opened.page.close()


@pytest.mark.slow
def test_sample_district_map_is_small_fast_and_complete(browser, tmp_path):
    if not (SAMPLE.parent / "villages.geojson").is_file():
        pytest.skip("data/sample is not generated")
    results = pipeline.run_pipeline(load_config(SAMPLE))
    written = maps.write_maps(results, tmp_path / "maps", lang="vi")
    index = written[0]
    assert index.stat().st_size < 5 * 2**20
    assert len(written) == 1 + len(results.communes)
    opened = Opened(browser, index)
    assert opened.load_s < 10
    for key in LAYERS:
        opened.set_layer(_layer_label("vi", key), True)
    counts = opened.page.evaluate("covgap.featureCounts()")
    expected = _expected_counts(results)
    for key in LAYERS:
        assert counts[key] == expected[key] == opened.paths_in(key), key
    opened.offline_and_clean()
    opened.page.close()
    # One commune page: its villages only.
    commune = results.communes.iloc[0]
    page = Opened(browser, index.parent / maps.page_files(list(results.communes["name"]))[commune["name"]])
    level = results.config.report.level
    assert page.page.evaluate("covgap.featureCounts()")["villages_4g"] == int((results.villages[level] == commune["name"]).sum())
    page.offline_and_clean()
    page.page.close()


def test_what_changed_shows_in_the_panel(browser, hand_results, tmp_path):
    import pandas as pd

    opened = Opened(browser, maps.write_maps(hand_results, tmp_path / "first", lang="vi")[0])
    assert opened.page.locator("#covgap-changes").count() == 0  # no previous run, no section
    opened.page.close()
    hand_results.changes = pd.DataFrame([
        {"kind": "dead_zone", "id": "DZ-001", "name": "Thôn Hai", "change": "opened", "detail": "0.0200 km²"},
        {"kind": "village", "id": "V1", "name": "Thôn Một", "change": "now meets 4G target", "detail": "95% covered"},
    ])
    opened = Opened(browser, maps.write_maps(hand_results, tmp_path / "second", lang="vi")[0])
    rows = opened.page.locator("#covgap-changes tbody tr")
    assert rows.count() == 2
    assert rows.nth(0).inner_text().split("\t") == ["vùng lõm", "Thôn Hai", "mới xuất hiện", "0.0200 km²"]
    assert rows.nth(1).inner_text().split("\t") == ["thôn", "Thôn Một", "nay đạt 4G", "95% covered"]
    opened.offline_and_clean()
    opened.page.close()


def test_online_basemap_is_optional_and_fails_harmlessly_offline(browser, hand_maps):
    opened = Opened(browser, hand_maps[0])
    tiles = []
    opened.page.route("https://tile.openstreetmap.org/**", lambda route: (tiles.append(route.request.url), route.abort()))
    opened.offline_and_clean()  # off by default: nothing requested yet
    opened.set_layer(maps.STRINGS["vi"]["layer_basemap"], True)
    opened.page.wait_for_timeout(500)
    assert tiles and all(u.startswith("https://tile.openstreetmap.org/") for u in tiles)
    assert all(u == opened.url or u in tiles for u in opened.requests)
    assert not [e for e in opened.errors if "net::ERR_FAILED" not in e]  # only the refused tiles
    assert opened.paths_in("villages_4g") == 3  # the map itself is still drawn
    opened.page.close()


def _rgb(css: str) -> tuple[int, int, int]:
    """(r, g, b) of a computed CSS colour 'rgb(r, g, b)' or a hex '#rrggbb'."""
    css = css.strip()
    if css.startswith("#"):
        return tuple(int(css[i:i + 2], 16) for i in (1, 3, 5))
    return tuple(int(float(x)) for x in css[css.index("(") + 1:css.index(")")].split(",")[:3])


def _is_green(rgb: tuple[int, int, int]) -> bool:
    r, g, b = rgb
    return g > r + 40 and g > b + 40


def test_insufficient_evidence_is_never_drawn_green(browser, hand_maps):
    opened = Opened(browser, hand_maps[0])
    fills = opened.page.evaluate("""() => {
        const out = {};
        covgap.layers.villages_4g.eachLayer(l => { out[l.feature.properties.name] = l.options.fillColor; });
        return out;
    }""")
    assert _is_green(_rgb(fills["Thôn Một"]))  # meets: green
    assert not _is_green(_rgb(fills["Thôn Ba"]))  # insufficient evidence (2 of 6 cells measured)
    # The scorecard: "no dead zones" is not met here (a dead zone was found); insufficient evidence is grey text.
    row = opened.page.locator('#covgap-scorecard tr[data-target="villages_4g"]')
    assert "68,3% số hộ ở ô đã đo đủ" in row.inner_text()
    for status in opened.page.locator("#covgap-scorecard td.covgap-status").all():
        colour = _rgb(status.evaluate("e => getComputedStyle(e).color"))
        if "status-met" not in (status.get_attribute("class") or ""):
            assert not _is_green(colour)
    opened.offline_and_clean()
    opened.page.close()


def test_no_4g_zone_popup_shows_its_3g_level(browser, hand_maps):
    opened = Opened(browser, hand_maps[0])
    for key in ["dead_zones", "fibre", "centres", "villages_4g", "communes"]:
        opened.set_layer(_layer_label("vi", key), False)
    opened.page.evaluate("""() => covgap.layers.no4g_zones.eachLayer(l => l.openPopup(l.getBounds().getCenter()))""")
    text = opened.popup_text()
    assert "Vùng không có 4G N4G001" in text and "chỉ có sóng 2G/3G dùng được" in text
    assert "3G RSCP trung vị -76 dBm" in text.replace("\u2212", "-")
    assert "0,0% mẫu 4G" in text
    opened.offline_and_clean()
    opened.page.close()


def test_fibre_plan_layer_and_panel_line(browser, hand_results, tmp_path):
    # The hand district's plan (tests/test_plans.py): V2 80 m and V3 280 m of straight spur, 360 m in all, 95% after.
    index = maps.write_maps(hand_results, tmp_path / "maps-en", lang="en")[0]
    opened = Opened(browser, index)
    line = opened.page.locator("#covgap-fibre-plan").inner_text()
    assert line == "0.4 km of spur (2 spurs, 18,000,000 VND) to pass 80% of households: 95.0%."
    opened.set_layer(_layer_label("en", "fibre_plan"), True)
    assert opened.paths_in("fibre_plan") == 2
    legend = opened.page.locator('.covgap-legend-section[data-layer="fibre_plan"]').inner_text()
    assert "cheapest spurs past 80% of households" in legend
    opened.page.evaluate("""() => covgap.layers.fibre_plan.eachLayer(l => {
        if (l.feature.properties.village_id === 'V3') { l.openPopup(l.getCenter()); } })""")
    text = opened.popup_text()
    assert "Fibre spur needed: Thôn Ba" in text and "280 m" in text and "14,000,000 VND" in text
    assert "F1 (VNPT-VinaPhone)" in text and "Households gained\t40" in text
    opened.offline_and_clean()
    opened.page.close()


def test_measurement_plan_layer_and_panel_line(browser, hand_project, tmp_path):
    # The hand-made road of tests/test_plans.py: one waypoint in V3, one day of 0.9 km, V3's 40 households decided.
    from test_plans import with_drive

    results = pipeline.run_pipeline(load_config(with_drive(hand_project)), now_s=1_790_000_000)
    index = maps.write_maps(results, tmp_path / "maps-plan", lang="en")[0]
    opened = Opened(browser, index)
    assert opened.page.locator("#covgap-measurement-plan").inner_text() == (
        "Measure next: 1 days, 1 km of driving (1 waypoints) give 1 villages (40 households) a 4G verdict.")
    opened.set_layer(_layer_label("en", "measurement_plan"), True)
    assert opened.paths_in("measurement_plan") == 2  # the day's route and its waypoint
    opened.page.evaluate("""() => covgap.layers.measurement_plan.eachLayer(l => {
        if (l.feature.properties.kind === 'waypoint') { l.openPopup(); } })""")
    text = opened.popup_text()
    assert "Waypoint 1-1" in text and "Thôn Ba" in text and "Households in the cell\t6.7" in text
    opened.offline_and_clean()
    opened.page.close()


# --------------------------------------------------------------------------- printing
def test_print_style_hides_controls_and_keeps_title_legend_and_scorecard(browser, hand_maps):
    opened = Opened(browser, hand_maps[0])
    page = opened.page
    shown = "sel => { const e = document.querySelector(sel); return !!e && getComputedStyle(e).display !== 'none'; }"
    assert page.evaluate(shown, ".leaflet-control-layers") and page.evaluate(shown, "#covgap-panel-toggle")
    page.emulate_media(media="print")
    for hidden in (".leaflet-control-layers", ".leaflet-control-zoom", "#covgap-panel-toggle", ".covgap-search", ".covgap-nav"):
        assert not page.evaluate(shown, hidden), hidden
    for kept in (".covgap-legend", "#covgap-panel h1", "#covgap-scorecard", ".leaflet-control-scale"):
        assert page.evaluate(shown, kept), kept
    assert page.locator("#covgap-panel h1").inner_text().startswith("Bản đồ")
    opened.offline_and_clean()


def _png_size_and_spread(path: Path) -> tuple[tuple[int, int], float]:
    from PIL import Image

    raw = path.read_bytes()
    assert raw[:8] == b"\x89PNG\r\n\x1a\n"
    with Image.open(path) as img:
        img.load()
        grey = np.asarray(img.convert("L"), dtype=float)
        return img.size, float(grey.std())


def test_cli_map_png_and_pdf_render_every_page(hand_results, tmp_path):
    """`covgap map --png/--pdf`: each page in headless Chromium, A4 landscape, print style; not blank.
    The command runs in its own process, as a user runs it (this module's browser holds Playwright here)."""
    import subprocess
    import sys

    from covgap import outputs, snapshots

    def covgap(*args):
        done = subprocess.run([sys.executable, "-m", "covgap.cli", *args], capture_output=True, text=True, timeout=300)
        return done.returncode, done.stdout + done.stderr

    if not Path(snapshots.CHROMIUM).exists():
        pytest.skip("chromium is not installed (make system-deps)")
    pytest.importorskip("playwright.sync_api")
    out = tmp_path / "out"
    out.mkdir()
    outputs.write_outputs(hand_results, out)
    args = ["map", "--config", str(tmp_path / "none.toml"), "--out", str(out), "--maps", str(tmp_path / "maps"),
            "--png", str(tmp_path / "print" / "district.png"), "--pdf", str(tmp_path / "print" / "district.pdf")]
    code, output = covgap(*args)
    assert code == 0, output
    pages = sorted(p.name for p in (tmp_path / "maps").glob("*.html"))
    commune_pages = [p for p in pages if p != "index.html"]
    assert len(commune_pages) == 1
    expected = {"district.png", "district.pdf", *(f"district-{Path(p).stem}.{k}" for p in commune_pages for k in ("png", "pdf"))}
    assert {p.name for p in (tmp_path / "print").iterdir()} == expected
    for png in (tmp_path / "print").glob("*.png"):
        size, spread = _png_size_and_spread(png)
        assert size == (2246, 1588)  # A4 landscape, 1123 × 794 CSS pixels at 2 image pixels each
        assert spread > 10, (png, spread)  # a blank or one-colour image has a spread near 0
    pdf = (tmp_path / "print" / "district.pdf").read_bytes()
    import re

    # One sheet, A4 landscape: 297 × 210 mm = 841.9 × 595.3 pt (Chromium rounds the height to whole CSS pixels).
    boxes = [(float(w), float(h)) for w, h in re.findall(rb"/MediaBox \[0 0 (\d+\.?\d*) (\d+\.?\d*)\]", pdf)]
    assert pdf.startswith(b"%PDF-") and len(boxes) == 1
    assert abs(boxes[0][0] - 841.89) < 1 and abs(boxes[0][1] - 595.28) < 1.5, boxes
    # An existing file is not replaced without --overwrite; with it, it is.
    code, output = covgap(*args)
    assert code == 1 and "already exist" in output and "--overwrite" in output and "Traceback" not in output
    assert covgap(*args, "--overwrite")[0] == 0
    code, output = covgap(*args[:-4], "--png", str(tmp_path / "x.jpg"))
    assert code == 2 and "ending in .png" in output


def test_png_without_playwright_or_chromium_says_how_to_install(hand_maps, tmp_path, monkeypatch):
    import sys

    from covgap import snapshots
    from covgap.errors import CovgapError

    monkeypatch.setitem(sys.modules, "playwright.sync_api", None)  # as if Playwright were not installed
    with pytest.raises(CovgapError, match=r"Playwright is not installed; install Playwright's Python package"):
        snapshots.render_snapshots(hand_maps, png=tmp_path / "a.png")
    monkeypatch.undo()
    pytest.importorskip("playwright.sync_api")
    monkeypatch.setattr(snapshots, "CHROMIUM", str(tmp_path / "no-chromium"))
    monkeypatch.setenv("PATH", str(tmp_path))
    with pytest.raises(CovgapError, match=r"Chromium is not installed .*apt-get install chromium"):
        snapshots.render_snapshots(hand_maps, png=tmp_path / "a.png")
    assert not (tmp_path / "a.png").exists()


# --------------------------------------------------------------------------- context layers
def test_context_layers_are_drawn_under_the_results_toggleable_with_labels_as_text(browser, hand_project, tmp_path):
    from conftest import CONTEXT_PLACE, add_context_layers

    results = pipeline.run_pipeline(load_config(add_context_layers(hand_project)), now_s=1_790_000_000)
    written = maps.write_maps(results, tmp_path / "maps", lang="vi")
    opened = Opened(browser, written[0])
    page = opened.page
    counts = page.evaluate("covgap.featureCounts()")
    assert (counts["context_roads"], counts["context_rivers"], counts["context_places"]) == (1, 1, 1)
    assert opened.paths_in("context_roads") == 1 and opened.paths_in("context_rivers") == 1
    # Under every result: their panes are below the lowest result pane (the cells).
    z = page.evaluate("k => Number(getComputedStyle(document.querySelector('.covgap-pane-' + k)).zIndex)", "cells")
    for key in ("context_rivers", "context_roads", "context_places"):
        assert page.evaluate("k => Number(getComputedStyle(document.querySelector('.covgap-pane-' + k)).zIndex)", key) < z
    # The place name is text, exactly as in the data (no element, no dialog).
    label = page.locator(".covgap-place-label")
    assert label.count() == 1 and label.inner_text() == CONTEXT_PLACE
    assert page.locator(".covgap-place-label img").count() == 0
    legend = page.locator(".covgap-legend").inner_text()
    assert "Đường giao thông (nền)" in legend and "Địa danh (nền)" in legend
    # Toggleable in the layer list, legend following.
    opened.set_layer(_layer_label("vi", "context_roads"), False)
    assert opened.paths_in("context_roads") == 0 and "Đường giao thông (nền)" not in page.locator(".covgap-legend").inner_text()
    opened.set_layer(_layer_label("vi", "context_places"), False)
    # A tooltip fades out before it leaves the DOM.
    page.wait_for_function("document.querySelectorAll('.covgap-place-label').length === 0", timeout=5_000)
    opened.offline_and_clean()
    page.close()
    # The commune page has them too (they lie in its commune); a page without context layers lists none.
    commune = Opened(browser, written[1])
    assert commune.page.evaluate("covgap.featureCounts()")["context_roads"] == 1
    commune.page.close()
    import dataclasses

    config = load_config(hand_project)
    config = dataclasses.replace(config, inputs=dataclasses.replace(config.inputs, context=[]))
    plain = maps.write_maps(pipeline.run_pipeline(config, now_s=1_790_000_000), tmp_path / "plain")
    opened = Opened(browser, plain[0])
    assert opened.page.locator(".leaflet-control-layers-overlays label", has_text="(nền)").count() == 0
    opened.page.close()


# --------------------------------------------------------------------------- shared assets, villages as points
def test_shared_assets_page_loads_offline_from_the_maps_folder_only(browser, hand_results, tmp_path):
    written = maps.write_maps(hand_results, tmp_path / "maps", lang="vi", assets="shared")
    expected = _expected_counts(hand_results)
    assets = sorted(p.name for p in (tmp_path / "maps" / "assets").iterdir() if p.suffix in (".js", ".css"))
    for path in written:
        opened = Opened(browser, path)
        # Exactly the page and its five shared files, all from assets/ beside it; none failed; no error.
        folder = path.resolve().parent.as_uri() + "/assets/"
        assert opened.requests[0] == opened.url and sorted(u.removeprefix(folder) for u in opened.requests[1:]) == assets
        assert opened.failed == [] and opened.errors == [] and opened.dialogs == []
        # The layers are drawn as in a self-contained page; the commune outlines came from the shared data.
        for key in LAYERS:
            opened.set_layer(_layer_label("vi", key), True)
        counts = opened.page.evaluate("covgap.featureCounts()")
        for key in LAYERS:
            assert opened.paths_in(key) == expected[key] == counts[key], (path.name, key)
        assert opened.page.evaluate("covgap.data.strings.layer_communes") == maps.STRINGS["vi"]["layer_communes"]
        assert opened.page.locator("#covgap-scorecard tbody tr").count() == 4
        text = _click_village(opened, "Thôn Một")
        assert "Thôn Một" in text and "Số hộ\t100" in text
        assert opened.failed == [] and opened.errors == []
        opened.page.close()


def test_shared_assets_page_without_its_assets_says_so(browser, hand_results, tmp_path):
    import shutil

    written = maps.write_maps(hand_results, tmp_path / "maps", lang="vi", assets="shared")
    shutil.rmtree(tmp_path / "maps" / "assets")
    page = browser.new_page()
    errors = []
    page.on("pageerror", lambda e: errors.append(str(e)))
    page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
    page.goto(written[0].resolve().as_uri())
    page.wait_for_timeout(500)
    assert errors and page.locator("body[data-covgap-ready]").count() == 0
    page.close()


def test_a_village_given_as_a_point_is_drawn_as_a_circle(browser, hand_project, tmp_path):
    from test_maps import with_point_village

    results = pipeline.run_pipeline(load_config(with_point_village(hand_project, 40.0)), now_s=1_790_000_000)
    index = maps.write_maps(results, tmp_path / "maps", lang="vi")[0]
    opened = Opened(browser, index)
    shapes = opened.page.evaluate("""() => {
        const out = {};
        covgap.layers.villages_4g.eachLayer(l => {
            out[l.feature.properties.village_id] = l instanceof L.Circle ? ['circle', l.getRadius()] : ['polygon', 0]; });
        return out;
    }""")
    assert shapes == {"V1": ["polygon", 0], "V2": ["circle", 40], "V3": ["polygon", 0]}
    assert opened.paths_in("villages_4g") == 3
    # On screen the circle is 80 m across: compare with the 200 m wide box of V1 beside it.
    widths = opened.page.evaluate("""() => {
        const out = {};
        covgap.layers.villages_4g.eachLayer(l => {
            const b = l.getBounds(), w = covgap.map.latLngToContainerPoint(b.getNorthEast()).x
                - covgap.map.latLngToContainerPoint(b.getSouthWest()).x;
            out[l.feature.properties.village_id] = w; });
        return out;
    }""")
    assert widths["V2"] / widths["V1"] == pytest.approx(80 / 200, rel=0.03)
    # Its popup, and the needs-measurement area of a village measured nowhere, a circle too when it is one.
    text = _click_village(opened, "Thôn Hai")
    assert "Thôn Hai" in text and "Xã Thử Nghiệm" in text
    needs = opened.page.evaluate("""() => {
        const out = [];
        covgap.layers.needs_measurement.eachLayer(l => out.push([l.feature.properties.name, l instanceof L.Circle]));
        return out; }""")
    whole = {f["properties"]["name"] for f in maps.map_layers(results)["layers"]["needs_measurement"]["features"]
             if f["properties"].get("whole_village")}
    assert whole == {"Thôn Hai"} and sum(c for _, c in needs) == 1  # measured nowhere: its needs area is its disc
    for name, is_circle in needs:
        assert is_circle == (name == "Thôn Hai")
    # The search zooms to it with the villages layer off (a circle's bounds without the map).
    opened.page.keyboard.press("Escape")
    opened.set_layer(_layer_label("vi", "villages_4g"), False)
    assert opened.page.evaluate("covgap.showVillage('Thôn Hai')") is True
    assert "Thôn Hai" in opened.popup_text()
    opened.offline_and_clean()
    opened.page.close()


def test_an_operator_view_sent_as_another_views_key_shows_that_image(browser, hand_results, tmp_path):
    data = maps.map_layers(hand_results)
    cells = data["district"]["cells"]
    data["district"]["cells"] = {**cells, "Viettel": json.loads(json.dumps(cells["*"]))}
    index = maps.write_maps_from_layers(data, tmp_path / "maps", lang="vi")[0]
    assert '"Viettel":"*"' in index.read_text(encoding="utf-8")
    opened = Opened(browser, index)
    opened.set_layer(_layer_label("vi", "cells"), True)
    src_any = opened.page.evaluate("document.querySelector('.covgap-pane-cells img').src")
    opened.page.select_option("#covgap-operator", "Viettel")
    assert opened.page.evaluate("covgap.operator()") == "Viettel"
    assert opened.page.evaluate("document.querySelector('.covgap-pane-cells img').src") == src_any
    legend = opened.page.locator('.covgap-legend-section[data-layer="cells"]').inner_text()
    assert f"({cells['*']['counts']['insufficient_evidence']} ô)" in legend
    opened.offline_and_clean()
    opened.page.close()
