"""One map page as HTML: Leaflet and covgap's script and style either inlined or loaded from the maps
folder's ``assets/`` (see :func:`shared_asset_files`), the page data as JSON in a ``<script>`` element,
and a check that nothing would load from outside the maps folder.

:mod:`covgap.maps` decides what a page shows (:func:`covgap.maps.page_data`) and which mode the pages
are written in; this module only assembles the HTML (folium for the Leaflet scaffolding) and the
shared asset files.
"""

from __future__ import annotations

import base64
import functools
import hashlib
import json
import re
from html import escape as escape_html
from importlib import resources
from typing import Any

import numpy as np

from covgap.errors import OutputError

GENERATOR = "covgap-map"
#: Folder, inside the maps folder, of the files shared by the pages (``[output] map_assets``).
ASSETS_DIR = "assets"
#: The one form of a shared asset's file name: no separator, no ``..``, no leading dot.
ASSET_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_-]*(?:\.[A-Za-z0-9]+)+")
#: Coordinate rounding of the page centre (decimal degrees), as the display data.
DECIMALS = 5


def json_for_script(value) -> str:
    """JSON safe to embed in an HTML ``<script>`` element.

    ``<``, ``>`` and ``&`` become ``\\u003c``, ``\\u003e``, ``\\u0026`` (so no
    string can close the element or open a comment), as do U+2028 and U+2029.
    """
    text = json.dumps(value, ensure_ascii=False, allow_nan=False, separators=(",", ":"))
    for ch, esc in (("<", "\\u003c"), (">", "\\u003e"), ("&", "\\u0026"), ("\u2028", "\\u2028"), ("\u2029", "\\u2029")):
        text = text.replace(ch, esc)
    return text


def _vendor_text(*parts: str) -> str:
    return resources.files("covgap").joinpath("vendor", *parts).read_text(encoding="utf-8")


def _vendor_data_uri(*parts: str) -> str:
    data = resources.files("covgap").joinpath("vendor", *parts).read_bytes()
    return "data:image/png;base64," + base64.b64encode(data).decode("ascii")


def _template_text(name: str) -> str:
    return resources.files("covgap").joinpath("templates", name).read_text(encoding="utf-8")


@functools.lru_cache(maxsize=1)
def leaflet_assets() -> tuple[str, str]:
    """Leaflet's CSS (its images as data: URIs) and JS (no source-map comment), from ``vendor/leaflet``."""
    css = _vendor_text("leaflet", "leaflet.css")
    css = re.sub(r"url\((?:'|\")?images/([a-z0-9-]+\.png)(?:'|\")?\)",
                 lambda m: f"url({_vendor_data_uri('leaflet', 'images', m.group(1))})", css)
    js = _vendor_text("leaflet", "leaflet.js")
    js = re.sub(r"\n//# sourceMappingURL=\S+\s*$", "\n", js)
    for text, what in ((css, "leaflet.css"), (js, "leaflet.js")):
        if re.search(r"</(script|style)", text, re.IGNORECASE):
            raise OutputError(f"vendor/leaflet/{what} contains a closing </script> or </style> and cannot be inlined")
    return css, js


_EXTERNAL = re.compile(
    r"<(?:script|img|iframe)\b[^>]*?\bsrc\s*=\s*[\"']?\s*(?!data:)([^\"'\s>]+)"
    r"|<link\b[^>]*?\bhref\s*=\s*[\"']?\s*(?!data:)([^\"'\s>]+)"
    r"|@import\s+(?:url\()?[\"']?\s*((?:https?:)?//[^\"')\s]+)"
    r"|url\(\s*[\"']?\s*((?:https?:)?//[^\"')\s]+)",
    re.IGNORECASE,
)


def check_self_contained(html: str, where: str, *, allowed: frozenset[str] = frozenset()) -> None:
    """Raise :class:`OutputError` if the page refers to any script, stylesheet or image outside the maps folder.

    ``allowed``: the relative references the page may load (``assets/<name>``, the shared assets the
    writer puts beside it); every one must be of that form. Anything else a ``src``/``href`` names
    (``http(s)://``, ``//``, an absolute path, ``..``, another file), and any CSS ``url()``/``@import`` of
    ``http(s):`` or ``//``, is refused.
    """
    for ref in allowed:
        folder, _, name = ref.partition("/")
        if folder != ASSETS_DIR or not ASSET_NAME.fullmatch(name):
            raise OutputError(f"{where}: {ref!r} is not a file of the maps folder's {ASSETS_DIR}/")
    found = sorted({next(g for g in m.groups() if g) for m in _EXTERNAL.finditer(html)} - set(allowed))
    if found:
        raise OutputError(f"{where}: the page would load {len(found)} external resource(s) ({', '.join(found[:5])}); "
                          "every script and stylesheet must be inlined from coverage/covgap/vendor (run `make vendor`) "
                          f"or be one of the shared files in {ASSETS_DIR}/")


def pack_layers(page: dict) -> dict:
    """The page data with each feature collection packed for the page: its property names once (``keys``),
    then per feature a row of values (``rows``, null for a property it does not have) and its geometry
    (``geometries``). ``map.js`` unpacks them into the same GeoJSON features (a null value is left out).

    A province's district page repeats some twenty property names over 4,656 villages: about half of
    its bytes.
    """
    if "layers" not in page:
        return page
    packed = {}
    for name, fc in page["layers"].items():
        features = fc.get("features")
        if features is None:  # packed already
            packed[name] = fc
            continue
        keys: dict[str, None] = {}
        for f in features:
            keys.update(dict.fromkeys(f["properties"]))
        packed[name] = {"type": "FeatureCollection", "keys": list(keys),
                        "rows": [[f["properties"].get(k) for k in keys] for f in features],
                        "geometries": [f["geometry"] for f in features]}
    return {**page, "layers": packed}


def _asset_name(stem: str, content: bytes, suffix: str) -> str:
    """``stem-<first 12 hex digits of the SHA-256>.suffix``: a new content gets a new name (no stale cache)."""
    return f"{stem}-{hashlib.sha256(content).hexdigest()[:12]}.{suffix}"


#: The shared files of a page in the order the page loads them (their roles, see :func:`shared_asset_files`).
ASSET_ROLES = ("leaflet_css", "leaflet_js", "covgap_css", "covgap_js", "covgap_shared")


def shared_asset_files(shared: dict) -> tuple[dict[str, bytes], dict[str, str]]:
    """The files of the maps folder's ``assets/`` for pages written in shared mode, and their references.

    Parameters
    ----------
    shared
        The page data all pages have in common (:func:`covgap.maps.shared_page_data`); it becomes a
        script that sets ``window.covgapShared``, which ``map.js`` merges into each page's own data.

    Returns
    -------
    files, refs
        ``files``: file name → content (Leaflet's CSS with its images as ``data:`` URIs and its JS,
        covgap's ``map.css`` and ``map.js``, the shared data, each named with a hash of its content,
        and Leaflet's licence as ``LICENSE-leaflet.txt``); ``refs``: role (:data:`ASSET_ROLES`) →
        ``assets/<name>``, what a page's ``<link href>``/``<script src>`` name.
    """
    css, js = leaflet_assets()
    contents = {
        "leaflet_css": ("leaflet", css.encode("utf-8"), "css"),
        "leaflet_js": ("leaflet", js.encode("utf-8"), "js"),
        "covgap_css": ("map", _template_text("map.css").encode("utf-8"), "css"),
        "covgap_js": ("map", _template_text("map.js").encode("utf-8"), "js"),
        "covgap_shared": ("data", f"window.covgapShared = {json_for_script(pack_layers(shared))};\n".encode(),
                          "js"),
    }
    files: dict[str, bytes] = {}
    refs: dict[str, str] = {}
    for role, (stem, content, suffix) in contents.items():
        name = _asset_name(stem, content, suffix)
        files[name] = content
        refs[role] = f"{ASSETS_DIR}/{name}"
    files["LICENSE-leaflet.txt"] = resources.files("covgap").joinpath("vendor", "leaflet", "LICENSE").read_bytes()
    for role in ("leaflet_css", "covgap_css"):  # a stylesheet must not load anything either
        check_self_contained(f"<style>{files[refs[role].split('/', 1)[1]].decode('utf-8')}</style>", refs[role])
    return files, refs


def render_html(page: dict, *, assets: dict[str, str] | None = None, strings: dict[str, str] | None = None) -> str:
    """One HTML page from its page data (:func:`covgap.maps.page_data`).

    Without ``assets`` the page is self-contained (Leaflet, covgap's script and style inlined). With
    ``assets`` (role → ``assets/<name>``, from :func:`shared_asset_files`) the page loads them with
    ``<link href>``/``<script src>`` relative to itself, and its data holds only what is its own
    (:func:`covgap.maps.own_page_data`); ``strings``, the page's words, then come from the shared data.

    Every page of a run has the same scaffolding (folium's Leaflet map, the inlined or shared
    assets): it is rendered and checked once (:func:`_skeleton`) and each page fills in its
    title (escaped), centre and data (:func:`json_for_script`: inert in its ``<script
    type="application/json">``) in one pass over the scaffolding, so nothing a page fills in is
    read as a place to fill. A page took about 80 ms through folium and jinja, most of it the
    same work again.
    """
    title_key = "title_district" if page["kind"] == "district" else "title_commune"
    title = (strings or page["strings"])[title_key].replace("{name}", page["name"])
    values = {"TITLE": escape_html(title, quote=True), "CENTRE": json.dumps(_centre_of(page)),
              "DATA": json_for_script(pack_layers(page))}
    if assets is None:  # the texts are part of the cache's key: new vendored files, a new scaffolding
        skeleton = _skeleton(None, inline_texts())
    else:
        skeleton = _skeleton(tuple(sorted(assets.items())), None)
    return _SLOT.sub(lambda m: values[m.group(1)], skeleton)


#: Where :func:`_skeleton` leaves a page's title, centre and data to fill in.
_SLOT = re.compile(r"@@covgap-(TITLE|CENTRE|DATA)@@")
#: The centre the scaffolding is rendered with (folium wants numbers there), marked afterwards.
_SKELETON_CENTRE = [11.123457, 22.765432]


#: Where the scaffolding leaves a shared file's reference, in shared mode (:func:`_scaffolding`).
_ASSET_SLOT = "@@covgap-ASSET-{}@@"
#: Scaffoldings rendered by another process (:func:`scaffoldings`), by :func:`_scaffolding`'s arguments.
_PREPARED: dict[tuple[bool, tuple[str, str, str, str] | None], str] = {}


def inline_texts() -> tuple[str, str, str, str]:
    """What a self-contained page inlines: Leaflet's CSS and JS, covgap's ``map.css`` and ``map.js``."""
    return (*leaflet_assets(), _template_text("map.css"), _template_text("map.js"))


def scaffoldings() -> dict[tuple[bool, tuple[str, str, str, str] | None], str]:
    """folium's scaffolding of both kinds of page (self-contained, and loading shared files), by the
    arguments of :func:`_scaffolding`: rendered by a child process while the run reads and analyses
    (covgap.cli: importing folium takes some 0.4 s), and handed back by :func:`use_scaffoldings`."""
    return {key: _scaffolding(*key) for key in ((False, inline_texts()), (True, None))}


def has_scaffoldings() -> bool:
    """Whether this process has rendered or been given the scaffoldings already."""
    return bool(_PREPARED) or _scaffolding.cache_info().currsize > 0


def use_scaffoldings(prepared: dict[tuple[bool, tuple[str, str, str, str] | None], str]) -> None:
    """Take the scaffoldings another process rendered (:func:`scaffoldings`): the pages are filled in from them."""
    _PREPARED.update(prepared)


@functools.lru_cache(maxsize=4)
def _skeleton(assets: tuple[tuple[str, str], ...] | None, inline: tuple[str, str, str, str] | None) -> str:
    """The HTML every page shares: slots for the title, centre and page data.

    ``assets``: the shared files' references (role, ``assets/<name>``), put in the scaffolding's
    places for them; else ``inline``: Leaflet's CSS and JS and covgap's ``map.css`` and ``map.js``,
    put in the page.
    """
    key = (assets is not None, None if assets is not None else inline)
    html = _PREPARED.get(key) or _scaffolding(*key)
    if any(html.count(f"@@covgap-{k}@@") != 1 for k in ("TITLE", "CENTRE", "DATA")):
        raise OutputError("the map page scaffolding is not as expected (a page's place for its title, centre or data)")
    if assets is not None:
        for role, ref in assets:
            slot = _ASSET_SLOT.format(role)
            if html.count(slot) != 1:
                raise OutputError("the map page scaffolding is not as expected (a shared file's place)")
            html = html.replace(slot, escape_html(ref, quote=True))
    check_self_contained(html, "the map pages' scaffolding", allowed=frozenset(dict(assets).values()) if assets else frozenset())
    return html


@functools.lru_cache(maxsize=4)
def _scaffolding(shared: bool, inline: tuple[str, str, str, str] | None) -> str:
    """The page rendered by folium once, with slots for the title, centre and page data, and in shared
    mode for the shared files' references (:data:`_ASSET_SLOT`); else with ``inline`` put in it."""
    import folium
    from branca.element import Element, MacroElement
    from jinja2 import Template

    fmap = folium.Map(location=_SKELETON_CENTRE, zoom_start=12, tiles=None, control_scale=True, zoom_control=True)
    # folium's defaults load Leaflet, jQuery, Bootstrap and Font Awesome from CDNs: none of them may stay.
    fmap.default_js = []
    fmap.default_css = []
    figure: Any = fmap.get_root()  # a branca Figure (typed as its base Element)
    figure.title = "@@covgap-TITLE@@"

    class _Raw(Element):
        """Text put in the page as it is. (branca's Element compiles its text as a Jinja template: slow for
        Leaflet, and a ``{{`` in it would be read as template code.)"""

        def __init__(self, text: str) -> None:
            super().__init__()
            self._text = text

        def render(self, **kwargs) -> str:
            return self._text

    figure.header.add_child(_Raw(f'<meta name="generator" content="{GENERATOR}" />'), name="covgap_generator")
    if inline is not None:
        css, js, map_css, map_js = inline
        figure.header.add_child(_Raw(f"<style>{css}</style>"), name="leaflet_css")
        figure.header.add_child(_Raw(f"<script>{js}</script>"), name="leaflet_js")
        figure.header.add_child(_Raw(f"<style>{map_css}</style>"), name="covgap_css")
        figure.header.add_child(_Raw(f"<script>{map_js}</script>"), name="covgap_js")
    elif shared:
        for role in ASSET_ROLES:
            ref = _ASSET_SLOT.format(role)
            tag = f'<link rel="stylesheet" href="{ref}" />' if role.endswith("_css") else f'<script src="{ref}"></script>'
            figure.header.add_child(_Raw(tag), name=role)
    figure.header.add_child(_Raw('<script type="application/json" id="covgap-data">@@covgap-DATA@@</script>'),
                            name="covgap_data")

    class _Start(MacroElement):
        _template = Template("{% macro script(this, kwargs) %}covgapStart({{ this._parent.get_name() }});{% endmacro %}")

    fmap.add_child(_Start())
    html = figure.render()
    centre = json.dumps(_SKELETON_CENTRE)
    if html.count(centre) != 1 or any(html.count(f"@@covgap-{k}@@") != 1 for k in ("TITLE", "DATA")) \
            or _SLOT.sub("", html).count("@@covgap-") != (len(ASSET_ROLES) if shared else 0):
        raise OutputError("the map page scaffolding from folium is not as expected (folium version?)")
    return html.replace(centre, "@@covgap-CENTRE@@")


def _centre_of(page: dict) -> list[float]:
    coords = [f["properties"]["label"] for f in page["layers"]["villages"]["features"]]
    if coords:
        lat, lon = np.mean(np.asarray(coords, dtype=float), axis=0)
        return [round(float(lat), DECIMALS), round(float(lon), DECIMALS)]
    return [15.0, 108.8]
