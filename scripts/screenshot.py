"""Screenshot of the sample district map for the README: docs/map-district.png.

Runs the analysis on the sample district, writes the maps to a temporary folder,
opens the district page in Debian's headless Chromium (through Playwright, offline,
no basemap) and saves the picture. Usage::

    .venv/bin/python scripts/screenshot.py [--config data/sample/covgap.toml] [--lang vi] [--out docs/map-district.png]
    .venv/bin/python scripts/screenshot.py --layer fibre_plan --out docs/plan-fibre.png
    .venv/bin/python scripts/screenshot.py --layer measurement_plan --out docs/plan-measurement.png

``--layer KEY`` shows that layer (a key of the page's layers) over the commune boundaries and
fibre routes only.
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

from playwright.sync_api import sync_playwright

from covgap import maps, pipeline
from covgap.config import load_config

ROOT = Path(__file__).resolve().parents[1]
CHROMIUM = "/usr/bin/chromium"
ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
        "--disable-component-update", "--no-first-run"]


#: Layers on by default that a --layer picture hides, so the layer shown stands out.
HIDDEN_FOR_LAYER = ("villages_4g", "no4g_zones", "dead_zones", "centres")


def _toggle(page, label: str) -> None:
    page.locator(".leaflet-control-layers-overlays label", has_text=label).locator("input").click()


def take_screenshot(config_path: Path, out: Path, *, lang: str = "vi", width: int = 1280, height: int = 800,
                    layer: str | None = None) -> Path:
    """Draw the district map of ``config_path`` and save a PNG screenshot of it to ``out``."""
    results = pipeline.run_pipeline(load_config(config_path))
    with tempfile.TemporaryDirectory() as tmp:
        index = maps.write_maps(results, Path(tmp), lang=lang)[0]
        with sync_playwright() as p:
            browser = p.chromium.launch(executable_path=CHROMIUM, args=ARGS)
            page = browser.new_page(viewport={"width": width, "height": height})
            requests = []
            page.on("request", lambda r: requests.append(r.url))
            page.goto(index.resolve().as_uri())
            page.wait_for_selector("body[data-covgap-ready]")
            if layer:
                strings = maps.STRINGS[lang]
                for key in (*HIDDEN_FOR_LAYER, layer):
                    _toggle(page, strings[f"layer_{key}"])
            page.wait_for_timeout(500)
            out.parent.mkdir(parents=True, exist_ok=True)
            page.screenshot(path=str(out))
            browser.close()
        if requests != [index.resolve().as_uri()]:
            raise SystemExit(f"the page made requests other than itself: {requests[1:]}")
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--config", type=Path, default=ROOT / "data" / "sample" / "covgap.toml")
    parser.add_argument("--out", type=Path, default=ROOT / "docs" / "map-district.png")
    parser.add_argument("--lang", choices=sorted(maps.STRINGS), default="vi")
    parser.add_argument("--layer", default=None, help="show this layer (e.g. fibre_plan, measurement_plan) over the boundaries")
    args = parser.parse_args()
    path = take_screenshot(args.config, args.out, lang=args.lang, layer=args.layer)
    print(f"{path} ({path.stat().st_size / 1024:.0f} KB)")


if __name__ == "__main__":
    main()
