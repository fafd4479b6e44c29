"""One map page as self-contained HTML: Leaflet and covgap's script and style inlined, the page data
as JSON in a ``<script>`` element, and a check that nothing would load from outside the page.

:mod:`covgap.maps` decides what a page shows (:func:`covgap.maps.page_data`); this module only
assembles the HTML (folium for the Leaflet scaffolding).
"""

from __future__ import annotations

import base64
import functools
import json
import re
from html import escape as escape_html
from importlib import resources
from typing import Any

import numpy as np

from covgap.errors import OutputError

GENERATOR = "covgap-map"
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


def check_self_contained(html: str, where: str) -> None:
    """Raise :class:`OutputError` if the page refers to any script, stylesheet or image outside itself."""
    found = sorted({next(g for g in m.groups() if g) for m in _EXTERNAL.finditer(html)})
    if found:
        raise OutputError(f"{where}: the page would load {len(found)} external resource(s) ({', '.join(found[:5])}); "
                          "every script and stylesheet must be inlined from coverage/covgap/vendor (run `make vendor`)")


def render_html(page: dict) -> str:
    """One self-contained HTML page from its page data (:func:`covgap.maps.page_data`)."""
    import folium
    from branca.element import Element, MacroElement
    from jinja2 import Template

    title_key = "title_district" if page["kind"] == "district" else "title_commune"
    title = page["strings"][title_key].replace("{name}", page["name"])
    centre = _centre_of(page)
    fmap = folium.Map(location=centre, zoom_start=12, tiles=None, control_scale=True, zoom_control=True)
    # folium's defaults load Leaflet, jQuery, Bootstrap and Font Awesome from CDNs: none of them may stay.
    fmap.default_js = []
    fmap.default_css = []
    figure: Any = fmap.get_root()  # a branca Figure (typed as its base Element)
    figure.title = escape_html(title, quote=True)
    css, js = leaflet_assets()

    class _Raw(Element):
        """Text put in the page as it is. (branca's Element compiles its text as a Jinja template: slow for
        Leaflet and a province's data, and a ``{{`` in a name would be read as template code.)"""

        def __init__(self, text: str) -> None:
            super().__init__()
            self._text = text

        def render(self, **kwargs) -> str:
            return self._text

    figure.header.add_child(_Raw(f'<meta name="generator" content="{GENERATOR}" />'), name="covgap_generator")
    figure.header.add_child(_Raw(f"<style>{css}</style>"), name="leaflet_css")
    figure.header.add_child(_Raw(f"<script>{js}</script>"), name="leaflet_js")
    figure.header.add_child(_Raw(f"<style>{_template_text('map.css')}</style>"), name="covgap_css")
    figure.header.add_child(_Raw(f"<script>{_template_text('map.js')}</script>"), name="covgap_js")
    figure.header.add_child(
        _Raw(f'<script type="application/json" id="covgap-data">{json_for_script(page)}</script>'), name="covgap_data")

    class _Start(MacroElement):
        _template = Template("{% macro script(this, kwargs) %}covgapStart({{ this._parent.get_name() }});{% endmacro %}")

    fmap.add_child(_Start())
    html = figure.render()
    check_self_contained(html, f"map page {page['file']}")
    return html


def _centre_of(page: dict) -> list[float]:
    coords = [f["properties"]["label"] for f in page["layers"]["villages"]["features"]]
    if coords:
        lat, lon = np.mean(np.asarray(coords, dtype=float), axis=0)
        return [round(float(lat), DECIMALS), round(float(lon), DECIMALS)]
    return [15.0, 108.8]
