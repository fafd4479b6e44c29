"""Planner maps without a browser: file names, escaping, self-containment, display data, atomic writing, CLI.

The browser checks (what a planner sees) are in test_maps_browser.py.
"""

from __future__ import annotations

import gzip
import json
import re
import struct
import zlib

import numpy as np
import pytest
from click.testing import CliRunner

from covgap import mappage, maps, outputs, pipeline
from covgap.cellstats import CellClass, class_raster
from covgap.cli import main
from covgap.config import load_config
from covgap.errors import OutputError


@pytest.fixture
def results(hand_project):
    return pipeline.run_pipeline(load_config(hand_project), now_s=1_790_000_000)


# --------------------------------------------------------------------------- names
@pytest.mark.parametrize("name, stem", [
    ("Xã Nghĩa Điền", "xa-nghia-dien"),
    ("Thị trấn La Hà", "thi-tran-la-ha"),
    ("../../etc/passwd", "etc-passwd"),
    ("..", "commune"),
    ("a\\b/c", "a-b-c"),
    ("<img src=x onerror=alert(1)>", "img-src-x-onerror-alert-1"),
    ("", "commune"),
])
def test_slugify_gives_safe_file_stems(name, stem):
    assert maps.slugify(name) == stem


def test_page_files_are_distinct_and_never_the_index():
    files = maps.page_files(["Nghĩa Điền", "Nghia Dien", "index", "..", "/"])
    assert list(files.values()) == ["nghia-dien.html", "nghia-dien-2.html", "index-2.html", "commune.html",
                                    "commune-2.html"]
    for f in files.values():
        assert re.fullmatch(r"[a-z0-9][a-z0-9-]*\.html", f)


# --------------------------------------------------------------------------- escaping, self-containment
def test_json_for_script_cannot_close_the_script_element():
    value = {"name": "</script><script>alert(1)</script>", "b": "<!-- & -->", "line": "a\u2028b"}
    text = mappage.json_for_script(value)
    assert "<" not in text and ">" not in text and "&" not in text and "\u2028" not in text
    assert json.loads(text) == value


@pytest.mark.parametrize("snippet", [
    '<script src="https://cdn.jsdelivr.net/npm/leaflet@1.9.3/dist/leaflet.js"></script>',
    "<script src=//code.jquery.com/jquery.js></script>",
    '<link rel="stylesheet" href="http://example.com/a.css"/>',
    '<link rel="stylesheet" href="leaflet.css"/>',
    "<style>@import url('https://fonts.googleapis.com/css');</style>",
    "<style>.x { background: url(https://example.com/i.png) }</style>",
])
def test_check_self_contained_refuses_external_references(snippet):
    with pytest.raises(OutputError, match="external resource"):
        mappage.check_self_contained(f"<html><head>{snippet}</head></html>", "test page")


def test_check_self_contained_accepts_inline_and_data_uris():
    mappage.check_self_contained('<script>var a = "https://x";</script><link rel="icon" href="data:image/png;base64,AA"/>'
                              '<a href="other.html">x</a><img src="data:image/png;base64,AA">', "test page")


def test_leaflet_is_inlined_with_its_images(results):
    css, js = mappage.leaflet_assets()
    assert "url(images/" not in css and css.count("url(data:image/png;base64,") == 3
    assert 'version="1.9.4"' in js and "sourceMappingURL" not in js
    html = maps.render_page(maps.map_layers(results), lang="vi")
    assert css in html and js in html
    # folium's CDN assets (jQuery, Bootstrap, Font Awesome, awesome-markers) are gone, not just unreachable.
    for name in ("jquery", "bootstrap", "awesome-markers", "fontawesome", "cdn.jsdelivr", "cdnjs"):
        assert name not in html.lower()
    assert not re.search(r"<script[^>]*\bsrc=|<link[^>]*\bhref=", html)


def test_names_that_look_like_references_are_data_not_loads(results):
    """A village named like a stylesheet import or a script tag is written on the page as inert, escaped
    data (the scaffolding is checked, the data cannot load anything): the page is written, whole."""
    import dataclasses

    villages = results.villages.copy()
    villages.loc[villages.index[0], "name"] = "url(//cdn.example.com/x.css) <script src=//evil.example/a.js></script>"
    html = maps.render_page(maps.map_layers(dataclasses.replace(results, villages=villages)), lang="vi")
    data = html.split('id="covgap-data">', 1)[1].split("</script>", 1)[0]
    assert "url(//cdn.example.com/x.css) \\u003cscript src=//evil.example/a.js\\u003e" in data
    assert "evil.example" not in html.replace(data, "") and "<script src=" not in html


def test_a_page_that_would_load_a_cdn_is_not_written(results, tmp_path, monkeypatch):
    folder = tmp_path / "maps"
    maps.write_maps(results, folder, lang="vi")
    before = {p.name: p.read_bytes() for p in folder.iterdir()}
    real = mappage.leaflet_assets
    monkeypatch.setattr(mappage, "leaflet_assets", lambda: (
        "@import url('https://unpkg.com/leaflet@1.9.4/dist/leaflet.css');" + real()[0], real()[1]))
    with pytest.raises(OutputError, match="unpkg.com"):
        maps.write_maps(results, folder, lang="en")
    assert {p.name: p.read_bytes() for p in folder.iterdir()} == before


# --------------------------------------------------------------------------- display data
def _png_size_and_pixels(data_uri: str) -> tuple[int, int, bytes]:
    import base64

    raw = base64.b64decode(data_uri.split(",", 1)[1])
    assert raw[:8] == b"\x89PNG\r\n\x1a\n"
    pos, idat, width, height = 8, b"", 0, 0
    while pos < len(raw):
        (length,) = struct.unpack(">I", raw[pos:pos + 4])
        kind, body = raw[pos + 4:pos + 8], raw[pos + 8:pos + 8 + length]
        crc = struct.unpack(">I", raw[pos + 8 + length:pos + 12 + length])[0]
        assert crc == zlib.crc32(kind + body) & 0xFFFFFFFF
        if kind == b"IHDR":
            width, height = struct.unpack(">II", body[:8])
        elif kind == b"IDAT":
            idat += body
        pos += 12 + length
    pixels = zlib.decompress(idat)
    assert len(pixels) == height * (width + 1)
    return width, height, pixels


def test_map_layers_hold_every_feature_and_the_cell_counts(results):
    data = maps.map_layers(results)
    layers = data["layers"]
    assert len(layers["villages"]["features"]) == len(results.villages) == 3
    assert len(layers["dead_zones"]["features"]) == len(results.zones) == 1
    assert len(layers["needs_measurement"]["features"]) == len(results.needs_measurement)
    assert len(layers["fibre"]["features"]) == 1
    assert len(layers["communes"]["features"]) == len(layers["centres"]["features"]) == 1
    v1 = next(f["properties"] for f in layers["villages"]["features"] if f["properties"]["village_id"] == "V1")
    assert v1["name"] == "Thôn Một" and v1["commune"] == "Xã Thử Nghiệm" and v1["households"] == 100
    assert v1["last_measured"] == "2026-03-01"
    zone = layers["dead_zones"]["features"][0]["properties"]
    assert zone["communes"] == ["Xã Thử Nghiệm"] and zone["area_km2"] == pytest.approx(0.02)
    # Cells: the counts of each class are those of the class raster, for "any operator" and each operator.
    cells = data["district"]["cells"]
    assert set(cells) == {"*", "MobiFone", "Viettel"}
    expected = np.bincount(results.classes.ravel(), minlength=6)
    assert cells["*"]["counts"] == {c.label: int(expected[int(c)]) for c in CellClass}
    assert cells["*"]["counts"] == {"covered": 6, "weak_4g": 1, "no_4g": 2, "no_service": 2, "insufficient_evidence": 7}
    mobi = class_raster(results.op_view[results.op_view["operator"] == "MobiFone"], results.layers.grid,
                        results.layers.inside)
    assert cells["MobiFone"]["counts"]["covered"] == int((mobi == int(CellClass.COVERED)).sum()) == 1
    width, height, pixels = _png_size_and_pixels(cells["*"]["png"])
    # 6 × 3 cells at PIXELS_PER_CELL pixels each (give or take a pixel of reprojection).
    assert abs(width - 6 * maps.PIXELS_PER_CELL) <= 2 and abs(height - 3 * maps.PIXELS_PER_CELL) <= 2
    (south, west), (north, east) = cells["*"]["bounds"]
    assert south < north and west < east
    # The data is valid JSON (no NaN) and coordinates are rounded.
    text = json.dumps(data, allow_nan=False)
    assert not re.search(r"\d\.\d{6,}\d*[,\]]", json.dumps(layers["villages"]["features"][0]["geometry"]))
    assert text


def test_map_layers_are_saved_with_the_outputs_deterministically(results, tmp_path):
    a, b = tmp_path / "a", tmp_path / "b"
    a.mkdir()
    b.mkdir()
    maps.write_map_layers(results, a)
    maps.write_map_layers(results, b)
    assert (a / maps.MAP_LAYERS_NAME).read_bytes() == (b / maps.MAP_LAYERS_NAME).read_bytes()
    assert maps.read_map_layers(a) == json.loads(json.dumps(maps.map_layers(results)))


def test_read_map_layers_says_what_to_do_when_missing(tmp_path):
    with pytest.raises(OutputError, match="covgap run"):
        maps.read_map_layers(tmp_path)
    (tmp_path / maps.MAP_LAYERS_NAME).write_bytes(gzip.compress(b'{"version": 0}'))
    with pytest.raises(OutputError, match="version"):
        maps.read_map_layers(tmp_path)


def test_commune_page_data_keeps_only_the_commune(results):
    data = maps.map_layers(results)
    # A second, made-up commune with no village: its page has no village, zone or fibre of the first.
    data["communes"].append({**data["communes"][0], "name": "Xã Khác", "file": "xa-khac.html", "cells": {}})
    page = maps.page_data(data, scope="Xã Khác", lang="en")
    assert page["kind"] == "commune" and page["file"] == "xa-khac.html"
    assert page["layers"]["villages"]["features"] == [] and page["layers"]["dead_zones"]["features"] == []
    page = maps.page_data(data, scope="Xã Thử Nghiệm", lang="en")
    assert len(page["layers"]["villages"]["features"]) == 3 and len(page["layers"]["dead_zones"]["features"]) == 1
    with pytest.raises(ValueError, match="not a commune"):
        maps.page_data(data, scope="Nowhere", lang="en")


def test_both_languages_have_every_label():
    assert set(maps.STRINGS["vi"]) == set(maps.STRINGS["en"])
    same = [k for k in maps.STRINGS["vi"] if maps.STRINGS["vi"][k] == maps.STRINGS["en"][k]]
    assert same == []


def test_change_report_goes_into_the_district_page(results):
    import pandas as pd

    results.changes = pd.DataFrame([{"kind": "dead_zone", "id": "DZ-001", "name": "DZ-001", "change": "opened",
                                     "detail": "0.02 km²"}])
    page = maps.page_data(maps.map_layers(results), scope=None, lang="vi")
    assert page["changes"] == [{"kind": "dead_zone", "id": "DZ-001", "name": "DZ-001", "change": "opened",
                                "detail": "0.02 km²"}]
    results.changes = None
    assert maps.page_data(maps.map_layers(results), scope=None, lang="vi")["changes"] is None


# --------------------------------------------------------------------------- writing
def test_write_maps_writes_district_and_commune_pages_and_removes_stale_ones(results, tmp_path):
    folder = tmp_path / "maps"
    folder.mkdir()
    stale = folder / "xa-da-sap-nhap.html"
    stale.write_text(f'<html><head><meta name="generator" content="{maps.GENERATOR}" /></head></html>', encoding="utf-8")
    foreign = folder / "notes.html"
    foreign.write_text("<html>someone else's page</html>", encoding="utf-8")
    written = maps.write_maps(results, folder, lang="vi")
    assert [p.name for p in written] == ["index.html", "xa-thu-nghiem.html"]
    assert not stale.exists() and foreign.exists()
    assert sorted(p.name for p in folder.iterdir()) == ["index.html", "notes.html", "xa-thu-nghiem.html"]
    index = (folder / "index.html").read_text(encoding="utf-8")
    assert '"file":"xa-thu-nghiem.html"' in index and '<html' in index
    assert "Thôn theo sóng 4G" in index


def test_english_pages_carry_english_labels(results, tmp_path):
    written = maps.write_maps(results, tmp_path, lang="en")
    html = written[0].read_text(encoding="utf-8")
    assert "Villages by 4G verdict" in html and "Thôn theo sóng 4G" not in html
    assert "<title>Mobile dead zones and fibre map: Huyện Thử</title>" in html


def test_cli_map_redraws_from_the_saved_results(results, tmp_path):
    out = tmp_path / "out"
    out.mkdir()
    outputs.write_outputs(results, out)
    assert (out / maps.MAP_LAYERS_NAME).is_file()
    runner = CliRunner()
    res = runner.invoke(main, ["map", "--config", str(tmp_path / "none.toml"), "--out", str(out),
                               "--maps", str(tmp_path / "maps"), "--lang", "en"])
    assert res.exit_code == 0, res.output
    assert "2 pages" in res.output
    assert "Villages by 4G verdict" in (tmp_path / "maps" / "index.html").read_text(encoding="utf-8")
    res = runner.invoke(main, ["map", "--config", str(tmp_path / "none.toml"), "--out", str(tmp_path / "empty")])
    assert res.exit_code == 1 and "covgap run" in res.output


# --------------------------------------------------------------------------- shared assets ([output] map_assets)
def _refs(html: str) -> list[str]:
    return re.findall(r'<(?:script[^>]*\bsrc|link[^>]*\bhref)="([^"]+)"', html)


def test_shared_assets_are_hash_named_files_of_the_maps_folder_that_every_page_loads(results, tmp_path):
    import hashlib
    from importlib import resources

    folder = tmp_path / "maps"
    written = maps.write_maps_from_layers(maps.map_layers(results), folder, lang="vi", assets="shared")
    assets = folder / "assets"
    record = json.loads((assets / maps.ASSETS_RECORD).read_text(encoding="utf-8"))
    on_disk = sorted(p.name for p in assets.iterdir() if p.name != maps.ASSETS_RECORD)
    assert record == {"generator": maps.GENERATOR, "files": on_disk}
    assert (assets / "LICENSE-leaflet.txt").read_bytes() == \
        resources.files("covgap").joinpath("vendor", "leaflet", "LICENSE").read_bytes()
    css, js = mappage.leaflet_assets()
    for path in written:
        html = path.read_text(encoding="utf-8")
        refs = _refs(html)
        # Leaflet's CSS and JS, covgap's CSS and JS, the shared data: in that order, all inside assets/.
        assert [r.split("/")[1].split("-")[0] for r in refs] == ["leaflet", "leaflet", "map", "map", "data"]
        for ref in refs:
            name = ref.removeprefix("assets/")
            assert ref.startswith("assets/") and name in on_disk
            stem, digest = name.rsplit(".", 1)[0].rsplit("-", 1)
            assert digest == hashlib.sha256((assets / name).read_bytes()).hexdigest()[:12]
        assert js not in html and css not in html and len(html) < 20_000  # the hand district's page: its own data only
        mappage.check_self_contained(html, path.name, allowed=frozenset(refs))
    leaflet_js = next(assets.glob("leaflet-*.js")).read_text(encoding="utf-8")
    assert leaflet_js == js
    # The shared data: the words, the page list and the commune outlines, packed; the page's own data says "shared".
    shared = next(assets.glob("data-*.js")).read_text(encoding="utf-8")
    assert shared.startswith("window.covgapShared = {") and "Xã Thử Nghiệm" in shared
    data = json.loads(shared.removeprefix("window.covgapShared = ").rstrip().removesuffix(";"))
    assert sorted(data) == sorted([*maps.SHARED_KEYS, "layers"]) and list(data["layers"]) == ["communes"]
    assert data["layers"]["communes"]["rows"][0][data["layers"]["communes"]["keys"].index("name")] == "Xã Thử Nghiệm"
    page = json.loads(re.search(r'id="covgap-data">(.*?)</script>', written[0].read_text(encoding="utf-8")).group(1))
    assert page["shared"] is True and "strings" not in page and "communes" not in page["layers"]


@pytest.mark.parametrize("assets", ["inline", "shared"])
def test_pages_are_filled_in_from_a_scaffolding_another_process_rendered(results, monkeypatch, assets):
    """The scaffolding a child process renders (covgap.cli starts one at the start of every run) gives the pages
    this process's own rendering gives, but for folium's random element names: inline assets, or the shared
    files' references in their places (escaped as before)."""
    from covgap.forked import Forked

    data = maps.map_layers(results)
    monkeypatch.setattr(mappage, "_PREPARED", {})

    def pages() -> dict[str, str]:
        mappage._skeleton.cache_clear()
        mappage._scaffolding.cache_clear()
        rendered = maps.render_maps(data, lang="vi", assets=assets).pages
        return {name: re.sub(r"\b([a-z_]+)_[0-9a-f]{32}\b", r"\1_ID", html) for name, html in rendered.items()}

    here = pages()
    assert not mappage.has_scaffoldings() or not mappage._PREPARED
    prepared = Forked(mappage.scaffoldings).result()
    assert set(prepared) == {(False, mappage.inline_texts()), (True, None)}
    mark = "<!-- rendered by the child -->"
    mappage.use_scaffoldings({key: html.replace("<head>", "<head>" + mark, 1) for key, html in prepared.items()})
    assert mappage.has_scaffoldings()
    there = pages()
    assert all(html.count(mark) == 1 for html in there.values())
    assert {name: html.replace(mark, "") for name, html in there.items()} == here


def test_auto_assets_inline_for_few_pages_and_shared_for_many(results, tmp_path):
    data = maps.map_layers(results)
    assert maps.assets_mode("auto", 5) == "inline" and maps.assets_mode("auto", 13) == "shared"
    assert maps.assets_mode("inline", 97) == "inline" and maps.assets_mode("shared", 2) == "shared"
    with pytest.raises(ValueError, match="auto, inline, shared"):
        maps.assets_mode("cdn", 2)
    written = maps.write_maps_from_layers(data, tmp_path / "few", lang="vi")  # 2 pages: self-contained
    assert not (tmp_path / "few" / "assets").exists() and _refs(written[0].read_text(encoding="utf-8")) == []
    many = {**data, "communes": [{**data["communes"][0], "name": f"Xã {k}", "file": f"xa-{k}.html"} for k in range(12)]}
    written = maps.write_maps_from_layers(many, tmp_path / "many", lang="vi")  # 13 pages: shared
    assert len(written) == 13 and len(_refs(written[0].read_text(encoding="utf-8"))) == 5


def test_assets_folder_follows_the_pages_and_only_covgaps_files_are_removed(results, tmp_path):
    data = maps.map_layers(results)
    folder = tmp_path / "maps"
    maps.write_maps_from_layers(data, folder, lang="vi", assets="shared")
    assets = folder / "assets"
    vi_data = {p.name for p in assets.glob("data-*.js")}
    (assets / "notes.txt").write_text("mine", encoding="utf-8")  # a file covgap did not write
    # Other words: a new shared-data file; the old one, no page refers to it any more, is removed.
    maps.write_maps_from_layers(data, folder, lang="en", assets="shared")
    en_data = {p.name for p in assets.glob("data-*.js")}
    assert len(en_data) == 1 and en_data != vi_data and (assets / "notes.txt").exists()
    assert set(json.loads((assets / maps.ASSETS_RECORD).read_text())["files"]) == \
        {p.name for p in assets.iterdir()} - {maps.ASSETS_RECORD, "notes.txt"}
    # Self-contained again: covgap's files go; the user's file and so the folder (still marked covgap's) stay.
    maps.write_maps_from_layers(data, folder, lang="en", assets="inline")
    assert sorted(p.name for p in assets.iterdir()) == [maps.ASSETS_RECORD, "notes.txt"]
    assert json.loads((assets / maps.ASSETS_RECORD).read_text())["files"] == []
    (assets / "notes.txt").unlink()
    maps.write_maps_from_layers(data, folder, lang="en", assets="shared")
    maps.write_maps_from_layers(data, folder, lang="en", assets="inline")
    assert not assets.exists()  # covgap's own folder, emptied: removed


def test_an_assets_folder_covgap_did_not_make_is_refused_and_left_alone(results, tmp_path):
    data = maps.map_layers(results)
    folder = tmp_path / "maps"
    (folder / "assets").mkdir(parents=True)
    (folder / "assets" / "logo.png").write_bytes(b"mine")
    with pytest.raises(OutputError, match=r"assets was not made by covgap .*map_assets = \"inline\""):
        maps.write_maps_from_layers(data, folder, lang="vi", assets="shared")
    assert sorted(p.name for p in folder.rglob("*")) == ["assets", "logo.png"]  # nothing written
    with pytest.raises(OutputError, match="assets was not made by covgap"):
        maps.check_maps_folder(folder, out_dir=tmp_path / "out", inputs=[], assets="shared")
    maps.check_maps_folder(folder, out_dir=tmp_path / "out", inputs=[], assets="inline")  # not needed: fine
    written = maps.write_maps_from_layers(data, folder, lang="vi", assets="inline")
    assert len(written) == 2 and (folder / "assets" / "logo.png").read_bytes() == b"mine"
    # A file named assets is not a folder covgap made either.
    other = tmp_path / "other"
    other.mkdir()
    (other / "assets").write_text("x", encoding="utf-8")
    with pytest.raises(OutputError, match="not made by covgap"):
        maps.write_maps_from_layers(data, other, lang="vi", assets="shared")


def test_leftovers_of_a_killed_map_writer_are_removed_only_when_covgaps_and_its_process_ended(results, tmp_path):
    """A run killed while writing the maps leaves temporary pages and a temporary assets folder: the next
    writing removes them when covgap's (its generator tag, its mark) and their process has ended; a user's
    file of the same shape, an unmarked folder and the temporary files of a running process stay."""
    import shutil
    import subprocess
    import sys

    data = maps.map_layers(results)
    made = tmp_path / "made"
    maps.write_maps_from_layers(data, made, lang="vi", assets="shared")  # what the killed run was writing
    ended = subprocess.Popen([sys.executable, "-c", "pass"])
    ended.wait()
    running = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        folder = tmp_path / "maps"
        maps.write_maps_from_layers(data, folder, lang="vi", assets="shared")
        shared = sorted(p.name for p in (made / "assets").iterdir() if p.name != maps.ASSETS_RECORD)
        gone = [f".index.html.tmp-{ended.pid}", f".assets.tmp-{ended.pid}",
                f"assets/.{shared[0]}.tmp-{ended.pid}", f"assets/.{maps.ASSETS_RECORD}.tmp-{ended.pid}"]
        kept = [f".notes.html.tmp-{ended.pid}", f".index.html.tmp-{running.pid}", f".assets.tmp-{ended.pid}0",
                f"assets/.notes.txt.tmp-{ended.pid}", f"assets/.{shared[0]}.tmp-{running.pid}"]
        shutil.copy(made / "index.html", folder / gone[0])
        shutil.copytree(made / "assets", folder / gone[1])
        shutil.copy(made / "assets" / shared[1], folder / gone[1] / f".{shared[0]}.tmp-{ended.pid}")
        shutil.copy(made / "assets" / shared[0], folder / gone[2])
        shutil.copy(made / "assets" / maps.ASSETS_RECORD, folder / gone[3])
        (folder / kept[0]).write_text("<html>my notes</html>", encoding="utf-8")
        shutil.copy(made / "index.html", folder / kept[1])
        (folder / kept[2]).mkdir()
        (folder / kept[2] / "logo.png").write_bytes(b"mine")
        (folder / kept[3]).write_text("mine", encoding="utf-8")
        shutil.copy(made / "assets" / shared[0], folder / kept[4])
        before = {p.relative_to(folder).as_posix() for p in folder.rglob("*")}
        maps.write_maps_from_layers(data, folder, lang="vi", assets="shared")
        after = {p.relative_to(folder).as_posix() for p in folder.rglob("*")}
        assert not any(g in after or any(a.startswith(g + "/") for a in after) for g in gone)
        assert set(kept) <= after and f"{kept[2]}/logo.png" in after
        assert before - after == {g for g in gone} | {p for p in before if p.startswith(gone[1] + "/")}
        assert (folder / kept[0]).read_text(encoding="utf-8") == "<html>my notes</html>"
    finally:
        running.kill()
        running.wait()


def test_maps_are_not_current_when_a_shared_file_is_missing(results, tmp_path):
    out = tmp_path / "out"
    out.mkdir()
    outputs.write_outputs(results, out)
    folder = tmp_path / "maps"
    maps.write_maps_from_layers(maps.read_map_layers(out), folder, lang="vi", source=out / maps.MAP_LAYERS_NAME,
                                assets="shared")
    assert maps.maps_are_current(out, folder)
    next((folder / "assets").glob("map-*.js")).unlink()
    assert not maps.maps_are_current(out, folder)


@pytest.mark.parametrize("ref", ["../leaflet.js", "/tmp/leaflet.js", "assets/../x.js", "assets/sub/x.js",
                                 "assets/.hidden.js", "https://unpkg.com/x.js", "//cdn/x.js", "other/x.js"])
def test_only_files_of_the_assets_folder_may_be_loaded(ref):
    html = f'<html><head><script src="{ref}"></script></head></html>'
    with pytest.raises(OutputError):
        mappage.check_self_contained(html, "test page", allowed=frozenset({ref}))
    with pytest.raises(OutputError, match="external resource"):
        mappage.check_self_contained(html, "test page", allowed=frozenset({"assets/leaflet-0123456789ab.js"}))
    mappage.check_self_contained('<script src="assets/leaflet-0123456789ab.js"></script>', "test page",
                                 allowed=frozenset({"assets/leaflet-0123456789ab.js"}))


# --------------------------------------------------------------------------- villages given as points
def with_point_village(hand_project, radius_m: float = 40.0):
    """The hand project with village V2 given as a point (a disc of ``radius_m``) where no cell is measured."""
    from conftest import TO_WGS84, X0, Y0

    d = hand_project.parent
    villages = json.loads((d / "villages.geojson").read_text(encoding="utf-8"))
    for f in villages["features"]:
        if f["properties"]["village_id"] == "V2":
            f["geometry"] = {"type": "Point", "coordinates": list(TO_WGS84.transform(X0 + 300, Y0 - 250))}
    (d / "villages.geojson").write_text(json.dumps(villages, ensure_ascii=False), encoding="utf-8")
    toml = hand_project.read_text(encoding="utf-8").replace("[inputs]\n", f"[inputs]\nvillage_point_radius_m = {radius_m}\n", 1)
    hand_project.write_text(toml, encoding="utf-8")
    return hand_project


def test_a_village_given_as_a_point_goes_to_the_page_as_its_centre_and_radius(hand_project):
    from conftest import TO_WGS84, X0, Y0

    results = pipeline.run_pipeline(load_config(with_point_village(hand_project)), now_s=1_790_000_000)
    disc = maps._disc_villages(results.villages.geometry.to_numpy(), 40.0)
    assert disc.tolist() == [False, True, False]  # the boxes are not discs
    assert maps._disc_villages(results.villages.geometry.to_numpy(), 41.0).tolist() == [False, False, False]
    features = {f["properties"]["village_id"]: f for f in maps.map_layers(results)["layers"]["villages"]["features"]}
    v2 = features["V2"]
    lon, lat = TO_WGS84.transform(X0 + 300, Y0 - 250)
    assert v2["geometry"]["type"] == "Point" and v2["properties"]["radius_m"] == 40.0
    assert v2["geometry"]["coordinates"] == pytest.approx([lon, lat], abs=1e-5)
    assert v2["properties"]["label"] == pytest.approx([lat, lon], abs=1e-5)
    assert features["V1"]["geometry"]["type"] == "Polygon" and "radius_m" not in features["V1"]["properties"]


def test_page_layers_are_packed_and_unpack_to_the_same_properties(results):
    page = maps.page_data(maps.map_layers(results), scope=None, lang="vi")
    packed = mappage.pack_layers(page)
    for name, fc in page["layers"].items():
        p = packed["layers"][name]
        assert set(p) == {"type", "keys", "rows", "geometries"} and len(p["rows"]) == len(fc["features"])
        for row, geometry, feature in zip(p["rows"], p["geometries"], fc["features"]):
            # What map.js unpack() makes of a row: the non-null values under their names.
            assert {k: v for k, v in zip(p["keys"], row) if v is not None} == \
                {k: v for k, v in feature["properties"].items() if v is not None}
            assert geometry == feature["geometry"]
    # The page leaves out what its script does not use.
    assert all("communes" not in f["properties"] and "route_id" not in f["properties"] for f in page["layers"]["fibre"]["features"])
    assert all("meets_fibre_goal" not in f["properties"] for f in page["layers"]["villages"]["features"])


def test_page_data_through_the_commune_index_is_the_same(hand_project):
    results = pipeline.run_pipeline(load_config(with_point_village(hand_project)), now_s=1_790_000_000)
    data = maps.map_layers(results)
    data["communes"].append({**data["communes"][0], "name": "Xã Khác", "file": "xa-khac.html", "cells": {}})
    index = maps.features_by_commune(data)
    assert len(index["villages"]["Xã Thử Nghiệm"]) == 3 and "Xã Khác" not in index["villages"]
    for scope in (None, "Xã Thử Nghiệm", "Xã Khác"):
        for lang in ("vi", "en"):
            assert maps.page_data(data, scope=scope, lang=lang, by_commune=index) == \
                maps.page_data(data, scope=scope, lang=lang)


def test_cli_map_takes_map_assets_from_the_configuration(results, hand_project):
    toml = hand_project.read_text(encoding="utf-8").replace('maps_dir = "maps"\n', 'maps_dir = "maps"\nmap_assets = "shared"\n')
    hand_project.write_text(toml, encoding="utf-8")
    out, folder = hand_project.parent / "out", hand_project.parent / "maps"
    out.mkdir()
    outputs.write_outputs(results, out)
    res = CliRunner().invoke(main, ["map", "--config", str(hand_project)])
    assert res.exit_code == 0, res.output
    assert len(_refs((folder / "index.html").read_text(encoding="utf-8"))) == 5
    record = json.loads((folder / maps.MAPS_RECORD).read_text(encoding="utf-8"))
    assert record["assets"] == sorted(p.name for p in (folder / "assets").iterdir() if p.name != maps.ASSETS_RECORD)
    assert maps.maps_are_current(out, folder)
    # A foreign assets folder: one line naming it, before anything is drawn.
    other = hand_project.parent / "maps2"
    (other / "assets").mkdir(parents=True)
    res = CliRunner().invoke(main, ["map", "--config", str(hand_project), "--maps", str(other)])
    assert res.exit_code == 1 and "assets was not made by covgap" in res.output and "Traceback" not in res.output
    assert sorted(p.name for p in other.rglob("*")) == ["assets"]


def test_a_view_with_the_same_image_as_another_is_sent_once(results):
    data = maps.map_layers(results)
    cells = data["district"]["cells"]
    assert cells["Viettel"] != cells["*"]
    data["district"]["cells"] = {**cells, "Viettel": json.loads(json.dumps(cells["*"]))}  # equal, not the same object
    page = maps.page_data(data, scope=None, lang="vi")
    assert page["cells"] == {"*": cells["*"], "MobiFone": cells["MobiFone"], "Viettel": "*"}
