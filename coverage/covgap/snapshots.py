"""Map pages as images and PDF to print and share: each page rendered by headless Chromium.

``covgap map --png FILE`` (and ``--pdf FILE``) open every map page just written in the same
headless Chromium the browser tests use (driven by Playwright, ``/usr/bin/chromium``), in
print mode, so the page's print style applies: controls hidden, title, legend and scorecard
kept, A4 landscape. The district page goes to ``FILE``; each commune page to ``FILE``'s name
with ``-<page>`` added (``district.png``, ``district-nghia-hanh.png``…).

Playwright and Chromium are optional (the ``test`` extra and ``make system-deps``); without
them the error says how to install them. An existing file is never replaced unless the
caller says so (``--overwrite``): an image or PDF carries no mark that covgap made it.
"""

from __future__ import annotations

import logging
import os
import shutil
from pathlib import Path

from covgap.errors import CovgapError, OutputError

log = logging.getLogger(__name__)

#: Where Debian's Chromium is; ``chromium`` on the PATH is tried after it.
CHROMIUM = "/usr/bin/chromium"
#: A4 landscape in CSS pixels (96 per inch): 297 × 210 mm.
A4_LANDSCAPE_PX = (1123, 794)
#: Image pixels per CSS pixel of the PNG (2246 × 1588 pixels: about 192 dpi on A4).
PNG_SCALE = 2.0
#: How long a page may take to draw (ms) before the render is abandoned.
READY_TIMEOUT_MS = 60_000
_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
         "--disable-component-update", "--no-first-run"]
INSTALL_HINT = ("install Playwright's Python package (pip install 'playwright>=1.45', or pip install -e '.[test]') "
                "and Chromium (sudo apt-get install chromium, or make system-deps); covgap uses the system "
                "Chromium and never downloads a browser")


def find_chromium() -> str:
    """The Chromium executable: :data:`CHROMIUM`, else ``chromium`` on the PATH; a clear error if neither."""
    if Path(CHROMIUM).is_file():
        return CHROMIUM
    found = shutil.which("chromium") or shutil.which("chromium-browser")
    if found:
        return found
    raise CovgapError(f"cannot render the maps as PNG/PDF: Chromium is not installed ({CHROMIUM} not found); "
                      + INSTALL_HINT)


def snapshot_targets(pages: list[Path], target: Path) -> list[tuple[Path, Path]]:
    """``(page, image path)`` for each page: the first (the district) to ``target``, the others beside it
    as ``<target stem>-<page stem><suffix>``."""
    target = Path(target)
    out = []
    for i, page in enumerate(pages):
        path = target if i == 0 else target.with_name(f"{target.stem}-{Path(page).stem}{target.suffix}")
        out.append((Path(page), path))
    return out


def _check_free(paths: list[Path], *, overwrite: bool) -> None:
    if overwrite:
        return
    taken = [p for p in paths if p.exists() or p.is_symlink()]
    if taken:
        shown = ", ".join(str(p) for p in taken[:3]) + (f" and {len(taken) - 3} more" if len(taken) > 3 else "")
        raise OutputError(f"{shown}: already exist{'s' if len(taken) == 1 else ''}; covgap does not replace a file it "
                          "cannot tell it made; choose another name, delete it, or give --overwrite")


def render_snapshots(pages: list[Path], *, png: Path | None = None, pdf: Path | None = None,
                     overwrite: bool = False) -> list[Path]:
    """Render each map page to PNG (``png``) and/or PDF (``pdf``) in print mode; return the files written.

    Parameters
    ----------
    pages
        The HTML map pages, the district's first (:func:`covgap.maps.write_maps_from_layers` order).
    png, pdf
        Name of the district page's image / PDF; the commune pages go beside it (:func:`snapshot_targets`).
    overwrite
        Replace files that already exist (otherwise they are refused before anything is drawn).

    Raises
    ------
    CovgapError
        Playwright or Chromium is missing (the message says how to install them), or a page did not draw.
    OutputError
        A file to write exists and ``overwrite`` is false.

    Notes
    -----
    The page is laid out at A4 landscape (1123 × 794 CSS pixels) with print media emulated, so
    the PNG shows what the PDF prints; the PNG has 2 image pixels per CSS pixel (2246 × 1588).
    """
    jobs = [(page, path, "png") for page, path in (snapshot_targets(pages, png) if png else [])]
    jobs += [(page, path, "pdf") for page, path in (snapshot_targets(pages, pdf) if pdf else [])]
    if not jobs:
        return []
    _check_free([path for _, path, _ in jobs], overwrite=overwrite)
    try:
        from playwright.sync_api import sync_playwright
    except ImportError as err:
        raise CovgapError("cannot render the maps as PNG/PDF: Playwright is not installed; " + INSTALL_HINT) from err
    executable = find_chromium()
    written: list[Path] = []
    with sync_playwright() as p:
        try:
            browser = p.chromium.launch(executable_path=executable, args=_ARGS)
        except Exception as err:  # playwright's Error: a broken or incompatible Chromium
            first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
            raise CovgapError(f"cannot render the maps as PNG/PDF: Chromium ({executable}) did not start ({first}); "
                              + INSTALL_HINT) from err
        try:
            for page_path, path, kind in jobs:
                _render_one(browser, page_path, path, kind)
                written.append(path)
                log.info("%s: %s of %s (%d bytes)", path, kind.upper(), page_path.name, path.stat().st_size)
        finally:
            browser.close()
    return written


def _render_one(browser, page_path: Path, path: Path, kind: str) -> None:
    width, height = A4_LANDSCAPE_PX
    context = browser.new_context(viewport={"width": width, "height": height}, device_scale_factor=PNG_SCALE)
    try:
        page = context.new_page()
        page.emulate_media(media="print")
        page.goto(page_path.resolve().as_uri())
        try:
            page.wait_for_selector("body[data-covgap-ready]", timeout=READY_TIMEOUT_MS)
        except Exception as err:  # playwright's TimeoutError
            raise CovgapError(f"{page_path}: the map page did not finish drawing in Chromium within "
                              f"{READY_TIMEOUT_MS // 1000} s; open it in a browser to see why") from err
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
        try:
            data = (page.screenshot(type="png", full_page=False) if kind == "png" else
                    page.pdf(format="A4", landscape=True, print_background=True, prefer_css_page_size=True))
            tmp.write_bytes(data)
            os.replace(tmp, path)
        finally:
            tmp.unlink(missing_ok=True)  # the temporary file made above, if still there
    finally:
        context.close()
