"""Gap packages for telecom partners: per operator, Shapefiles + GeoPackage + dictionary + README.

For each operator in the measurements or owning fibre routes (``results.partner_operators``),
:func:`write_partner_packages` writes ``<folder>/<name>/`` and ``<folder>/<name>.zip``
(:func:`package_name`: the name alone decides it) with six layers (``LAYERS``),
each as a Shapefile (UTF-8 ``.cpg``, field names of at most 10 characters) and
all together in one GeoPackage with the full field names, plus ``fields.csv``
(the data dictionary, Vietnamese and English) and ``README.txt``.

The layers are built by pure functions (:func:`partner_layers`); only
``write_*`` functions touch files.

Safety: operator names come from data. They only ever reach the file system
through :func:`safe_slug` (ASCII letters, digits, ``_`` and ``-``), and every
path is checked to stay inside the package folder before writing.

Determinism: the same inputs give byte-identical files except ``README.txt``
(its generation time). Shapefile ``.dbf`` headers carry the date of the last
measurement (``DBF_DATE_LAST_UPDATE``) instead of today, GeoPackages carry the
time of the last measurement in ``gpkg_contents.last_change``
(``OGR_CURRENT_DATE``), and zip entries have a fixed timestamp and sorted order.
"""

from __future__ import annotations

import contextlib
import csv
import hashlib
import io
import logging
import re
import shutil
import time
import zipfile
from dataclasses import dataclass
from pathlib import Path

import geopandas as gpd
import numpy as np
import pandas as pd
import pyogrio

from covgap import __version__, measurements as meas, names
from covgap.errors import OutputError, plain
from covgap.outputs import format_time, geopackage_writing, sha256_file, utc_times
from covgap.villages import Verdict

log = logging.getLogger(__name__)

#: Layer names, in the order they are written and described.
LAYERS = ("dead_zones", "no_4g_zones", "villages_without_4g", "needs_measurement", "villages_below_fibre_goal", "communes_without_fibre",
          "fibre_plan")

SCOPE_OPERATOR = "operator"
SCOPE_ALL = "all_operators"
FAILS_BOTH = "both"

#: Fixed timestamp of every zip entry (the earliest a zip can hold).
ZIP_DATE_TIME = (1980, 1, 1, 0, 0, 0)
#: Longest string a .dbf field holds (bytes); longer values are cut at a character boundary.
DBF_MAX_BYTES = 254



@dataclass(frozen=True)
class FieldSpec:
    """One field of the partner layers: its shapefile name, type, unit and meaning."""

    short: str  # at most 10 ASCII characters
    kind: str  # "str", "int", "float" or "datetime" (DateTime in the GeoPackage, Date in the shapefile)
    unit: str
    vi: str
    en: str


#: Every field of the partner layers: full name (GeoPackage) → shapefile name and meaning. Defined once here.
FIELDS: dict[str, FieldSpec] = {
    "zone_id": FieldSpec("zone_id", "str", "", "Mã vùng (DZ… vùng lõm sóng, N4G… vùng không có 4G)",
                         "Zone identifier (DZ… dead zone, N4G… no-4G zone)"),
    "scope": FieldSpec("scope", "str", "", "Phạm vi: 'operator' = đo được ở riêng nhà mạng này; "
                       "'all_operators' = ở nhà mạng tốt nhất (mọi nhà mạng đều như vậy)",
                       "Scope: 'operator' = measured for this operator; "
                       "'all_operators' = for the best operator (every operator is like this)"),
    "operator": FieldSpec("operator", "str", "", "Nhà mạng của gói dữ liệu này", "Operator this package is for"),
    "area_km2": FieldSpec("area_km2", "float", "km²", "Diện tích vùng", "Area of the zone"),
    "n_cells": FieldSpec("n_cells", "int", "cells", "Số ô lưới (ô vuông của lưới phân tích) trong vùng",
                         "Number of analysis grid cells in the zone"),
    "n_villages": FieldSpec("n_village", "int", "villages", "Số thôn/tổ dân phố mà vùng chạm tới",
                            "Number of villages the zone touches"),
    "villages": FieldSpec("villages", "str", "", "Tên các thôn mà vùng chạm tới, cách nhau bởi '; '",
                          "Names of the villages the zone touches, separated by '; '"),
    "households": FieldSpec("households", "float", "households", "Số hộ gia đình", "Number of households"),
    "households_in_zone": FieldSpec("hh_in_zone", "float", "households",
                                    "Số hộ gia đình sống trong vùng (theo tỷ lệ dân cư của từng thôn)",
                                    "Households living in the zone (from each village's share of population there)"),
    "n_samples": FieldSpec("n_samples", "int", "samples", "Số mẫu đo của mọi nhà mạng", "Measurement samples, all operators"),
    "operator_n_samples": FieldSpec("op_samples", "int", "samples", "Số mẫu đo của nhà mạng này",
                                    "Measurement samples of this operator"),
    "operator_rsrp_dbm_p50": FieldSpec("op_rsrp50", "float", "dBm", "Trung vị RSRP 4G của nhà mạng này ở các ô đo đủ (trống nếu không có mẫu 4G)",
                                       "Median 4G RSRP of this operator in its measured cells (empty if it has no 4G sample)"),
    "operator_rscp_dbm_p50": FieldSpec("op_rscp50", "float", "dBm",
                                       "Trung vị RSCP 3G của nhà mạng này (trung vị của các ô; trống nếu không có mẫu 3G)",
                                       "Median 3G RSCP of this operator (median of its cells; empty if it has no 3G sample)"),
    "operator_share_4g": FieldSpec("op_sh_4g", "float", "0–1", "Tỷ lệ mẫu của nhà mạng này ở trên 4G/5G",
                                   "Share of this operator's samples on 4G/5G"),
    "first_measured": FieldSpec("first_meas", "datetime", "GeoPackage: DateTime (UTC); Shapefile: Date (local)",
                                "Thời điểm đo đầu tiên (GeoPackage: ngày giờ UTC; Shapefile: ngày theo giờ địa phương)",
                                "First measurement time (GeoPackage: UTC date and time; Shapefile: local date)"),
    "last_measured": FieldSpec("last_meas", "datetime", "GeoPackage: DateTime (UTC); Shapefile: Date (local)",
                               "Thời điểm đo cuối cùng (GeoPackage: ngày giờ UTC; Shapefile: ngày theo giờ địa phương)",
                               "Last measurement time (GeoPackage: UTC date and time; Shapefile: local date)"),
    "village_id": FieldSpec("village_id", "str", "", "Mã thôn/tổ dân phố", "Village identifier"),
    "name": FieldSpec("name", "str", "", "Tên", "Name"),
    "fails_for": FieldSpec("fails_for", "str", "",
                           "Không đạt 4G với: 'operator' = riêng nhà mạng này, 'all_operators' = mọi nhà mạng, 'both' = cả hai",
                           "Fails the 4G target for: 'operator' = this operator, 'all_operators' = the best of all operators, 'both'"),
    "verdict_4g": FieldSpec("verdict_4g", "str", "", "Kết luận 4G với mọi nhà mạng (meets / fails / insufficient evidence)",
                            "4G verdict, any operator (meets / fails / insufficient evidence)"),
    "share_covered": FieldSpec("sh_covered", "float", "0–1", "Tỷ lệ diện tích thôn có sóng 4G tốt (mọi nhà mạng)",
                               "Share of the village area covered by 4G (any operator)"),
    "share_weak": FieldSpec("sh_weak", "float", "0–1", "Tỷ lệ diện tích thôn có sóng 4G yếu (mọi nhà mạng)",
                            "Share of the village area with weak 4G (any operator)"),
    "share_no_4g": FieldSpec("sh_no4g", "float", "0–1", "Tỷ lệ diện tích thôn không có 4G, chỉ có 2G/3G dùng được (mọi nhà mạng)",
                             "Share of the village area with no 4G, only usable 2G/3G (any operator)"),
    "share_dead": FieldSpec("sh_dead", "float", "0–1", "Tỷ lệ diện tích thôn mất sóng: không công nghệ nào dùng được (mọi nhà mạng)",
                            "Share of the village area with no usable service on any technology (any operator)"),
    "evidence_share": FieldSpec("sh_evid", "float", "0–1", "Tỷ lệ hộ của thôn sống ở ô đã đo đủ (cần ≥ ngưỡng để kết luận 4G)",
                                "Share of the village's households in measured cells (a 4G verdict needs at least the threshold)"),
    "share_unmeasured": FieldSpec("sh_unmeas", "float", "0–1", "Tỷ lệ diện tích thôn chưa đủ mẫu đo",
                                  "Share of the village area without enough samples"),
    "households_in_dead_zones": FieldSpec("hh_dead", "float", "households",
                                          "Số hộ trong vùng lõm sóng của mọi nhà mạng", "Households in any-operator dead zones"),
    "operator_verdict_4g": FieldSpec("op_verdict", "str", "", "Kết luận 4G với riêng nhà mạng này",
                                     "4G verdict for this operator alone"),
    "operator_share_covered": FieldSpec("op_sh_cov", "float", "0–1", "Tỷ lệ diện tích thôn có sóng 4G tốt của nhà mạng này",
                                        "Share of the village area covered by this operator's 4G"),
    "operator_share_weak": FieldSpec("op_sh_weak", "float", "0–1", "Tỷ lệ diện tích thôn có sóng 4G yếu của nhà mạng này",
                                     "Share of the village area with weak 4G from this operator"),
    "operator_share_no_4g": FieldSpec("op_sh_no4g", "float", "0–1",
                                      "Tỷ lệ diện tích thôn nơi nhà mạng này không có 4G, chỉ 2G/3G",
                                      "Share of the village area where this operator gives 2G/3G only"),
    "operator_share_dead": FieldSpec("op_sh_dead", "float", "0–1",
                                     "Tỷ lệ diện tích thôn nơi nhà mạng này mất sóng (không công nghệ nào dùng được)",
                                     "Share of the village area where this operator has no usable service"),
    "operator_share_unmeasured": FieldSpec("op_sh_unm", "float", "0–1", "Tỷ lệ diện tích thôn chưa đủ mẫu đo của nhà mạng này",
                                           "Share of the village area without enough samples of this operator"),
    "operator_households_in_dead_zones": FieldSpec("op_hh_dead", "float", "households",
                                                   "Số hộ trong vùng lõm sóng của nhà mạng này",
                                                   "Households in this operator's dead zones"),
    "unmeasured_area_km2": FieldSpec("unmeas_km2", "float", "km²", "Diện tích phần thôn chưa đủ mẫu đo",
                                     "Area of the village part without enough samples"),
    "households_passed": FieldSpec("hh_passed", "float", "households",
                                   "Số hộ được cáp quang đi qua (trong khoảng cách thả cáp của tuyến hiện có)",
                                   "Households passed by fibre (within the drop distance of an existing route)"),
    "fibre_share": FieldSpec("fibre_sh", "float", "0–1", "Tỷ lệ hộ được cáp quang đi qua", "Share of households passed by fibre"),
    "dist_to_fibre_m": FieldSpec("dist_fib_m", "float", "m", "Khoảng cách từ thôn đến tuyến cáp quang hiện có gần nhất",
                                 "Distance from the village to the nearest existing fibre route"),
    "spur_length_m": FieldSpec("spur_m", "float", "m", "Chiều dài nhánh cáp mới cần để đưa thôn vào khoảng cách thả cáp",
                               "Length of new cable needed to bring the village within the drop distance"),
    "dist_to_planned_fibre_m": FieldSpec("dist_pln_m", "float", "m", "Khoảng cách đến tuyến cáp quang dự kiến gần nhất",
                                         "Distance to the nearest planned fibre route"),
    "households_gained": FieldSpec("hh_gained", "float", "households",
                                   "Số hộ thêm được nếu kéo nhánh (số hộ chưa được đi qua; "
                                   "giả định nhánh đưa cả thôn vào khoảng cách thả cáp)",
                                   "Households gained by the spur (those not yet passed; "
                                   "assumes the spur brings the whole village within drop distance)"),
    "spur_straight_m": FieldSpec("spur_st_m", "float", "m", "Chiều dài nhánh nếu kéo thẳng", "Spur length in a straight line"),
    "spur_along": FieldSpec("spur_along", "str", "", "Nhánh theo 'roads' (đường giao thông) hay 'straight' (đường thẳng)",
                            "Spur along 'roads' or in a 'straight' line"),
    "cost_vnd": FieldSpec("cost_vnd", "float", "VND", "Chi phí nhánh (chiều dài × đơn giá [fibre] spur_cost_vnd_per_m)",
                          "Cost of the spur (length × [fibre] spur_cost_vnd_per_m)"),
    "cost_vnd_per_household": FieldSpec("cost_vnd_h", "float", "VND/household", "Chi phí mỗi hộ thêm được",
                                        "Cost per household gained"),
    "route_id": FieldSpec("route_id", "str", "", "Mã tuyến cáp quang hiện có mà nhánh nối vào (tuyến của nhà mạng này)",
                          "Existing fibre route the spur starts from (this operator's)"),
    "in_district_plan": FieldSpec("in_dist", "int", "0/1", "1 = nằm trong tập nhánh rẻ nhất để toàn huyện vượt mục tiêu",
                                  "1 = in the least-cost set of spurs that takes the district past the goal"),
    "in_unit_plan": FieldSpec("in_unit", "int", "0/1", "1 = nằm trong tập nhánh rẻ nhất để xã của thôn vượt mục tiêu",
                              "1 = in the least-cost set of spurs that takes the village's commune past the goal"),
    "commune_id": FieldSpec("commune_id", "str", "", "Mã xã", "Commune identifier"),
    "centre_source": FieldSpec("centre_src", "str", "", "Nguồn vị trí trung tâm xã (given = trụ sở UBND; representative point = điểm đại diện)",
                               "Where the centre comes from (given = People's Committee; representative point of the polygon)"),
    "centre_dist_to_fibre_m": FieldSpec("cen_dist_m", "float", "m", "Khoảng cách từ trung tâm xã đến tuyến cáp quang hiện có gần nhất",
                                        "Distance from the commune centre to the nearest existing fibre route"),
}

#: The shapefile field type of each kind, as ogrinfo names it (fields.csv); a shapefile has no DateTime.
_TYPE_NAMES = {"str": "String", "int": "Integer", "float": "Real", "datetime": "Date"}
_ROUND = {"area_km2": 6, "unmeasured_area_km2": 6, "households": 1, "households_in_zone": 1, "households_in_dead_zones": 1,
          "operator_households_in_dead_zones": 1, "households_passed": 1, "dist_to_fibre_m": 1, "spur_length_m": 1,
          "dist_to_planned_fibre_m": 1, "centre_dist_to_fibre_m": 1, "operator_rsrp_dbm_p50": 1, "households_gained": 1,
          "spur_straight_m": 1, "cost_vnd": 0, "cost_vnd_per_household": 0}


def _check_fields() -> None:
    shorts = [f.short for f in FIELDS.values()]
    bad = [s for s in shorts if len(s) > 10 or not re.fullmatch(r"[a-z][a-z0-9_]*", s)]
    dupes = sorted({s for s in shorts if shorts.count(s) > 1})
    if bad or dupes:  # pragma: no cover - a programming error caught at import
        raise AssertionError(f"partner field names: too long or not plain ASCII {bad}, used twice {dupes}")


_check_fields()


# --------------------------------------------------------------------------- names
def safe_slug(name: str) -> str:
    """A file-system-safe name for an operator: ASCII letters, digits, ``_`` and ``-`` only.

    ``"Viettel"`` stays ``"Viettel"``, ``"VNPT-VinaPhone"`` stays, ``"../x"`` becomes ``"x"``,
    ``"Viettel/.."`` becomes ``"Viettel"``, ``"Đông Á"`` becomes ``"Dong_A"``; a name with
    nothing usable becomes ``"operator"``; Windows device names (``CON``, ``NUL``…) get a prefix.
    """
    text = names.slugify(name, keep="A-Za-z0-9_-", sep="_", max_len=48, default="operator")
    return f"op_{text}" if text.upper() in names.WINDOWS_RESERVED else text


#: Canonical spellings of Vietnam's operators (covgap.measurements gives every spelling of them one of these).
KNOWN_OPERATORS = frozenset({*meas.OPERATOR_ALIASES.values(), *meas.OPERATOR_BY_MNC.values()})
_KNOWN_FOLDED = {name.casefold() for name in KNOWN_OPERATORS}
#: Hex digits of the SHA-256 of the exact name added to a name that is not its own file name.
NAME_HASH_DIGITS = 8


def package_name(name: str) -> str:
    """The file name (no extension) of an operator's package: it depends on the name alone.

    A name that is already a safe, unambiguous file name keeps it: ``"Viettel"``,
    ``"VNPT-VinaPhone"``, ``"unknown"``. That is: :func:`safe_slug` leaves it unchanged, and it
    is either one of :data:`KNOWN_OPERATORS` or all lower case and no known name in another
    case, so no two such names differ only in letter case (one file on Windows and macOS).
    Every other name gets its slug, ``-`` and the first 8 hex digits of the SHA-256 of the exact
    name (UTF-8): ``"Đông Á"`` → ``"Dong_A-<8 hex>"``, ``"Dong A"`` another 8 hex,
    ``"../x"`` → ``"x-<8 hex>"``. So a package keeps its file name from run to run, whatever
    other operators appear.
    """
    name = str(name)
    slug = safe_slug(name)
    if slug == name and (name in KNOWN_OPERATORS or (name == name.lower() and name.casefold() not in _KNOWN_FOLDED)):
        return slug
    digest = hashlib.sha256(name.encode("utf-8", "surrogatepass")).hexdigest()[:NAME_HASH_DIGITS]
    return f"{slug}-{digest}"


def package_slugs(operators: list[str]) -> dict[str, str]:
    """The package file name of each operator (:func:`package_name`), in operator order.

    Raises :class:`OutputError` in the (2⁻³² unlikely) case that two names still share a file name.
    """
    out = {op: package_name(op) for op in sorted(operators)}
    seen: dict[str, str] = {}
    for op, slug in out.items():
        other = seen.setdefault(slug.lower(), op)
        if other != op:
            raise OutputError(f"operators {plain(other)} and {plain(op)} would share the package file name {slug}; "
                              "rename one of them in the measurement files")
    return out


_CONTROL_CHARACTERS = re.compile(r"[\x00-\x08\x0b-\x1f\x7f-\x9f]")


def strip_control_characters(text: str) -> str:
    """``text`` without NUL and the other control characters (line feeds and tabs stay)."""
    return _CONTROL_CHARACTERS.sub("", text)


def level_fields(levels: list[str]) -> dict[str, FieldSpec]:
    """Fields for the administrative-unit columns (their names come from the configuration)."""
    taken = {f.short for f in FIELDS.values()}
    out = {}
    for level in levels:
        if level in FIELDS:
            raise OutputError(f"[inputs] communes level '{level}' has the name of a partner field; rename the level")
        base = names.slugify(level, keep="a-z0-9_", sep="_", lower=True, max_len=10, default="unit")
        if not base[0].isalpha():
            base = ("u" + base)[:10]
        short, k = base, 2
        while short in taken:
            suffix = str(k)
            short, k = base[:10 - len(suffix)] + suffix, k + 1
        taken.add(short)
        out[level] = FieldSpec(short, "str", "", f"Đơn vị hành chính cấp '{level}' chứa thôn (theo cấu hình [inputs] communes)",
                               f"Administrative unit of level '{level}' that holds the village ([inputs] communes)")
    return out


# --------------------------------------------------------------------------- layers (pure)
def partner_layers(results, operator: str) -> dict[str, gpd.GeoDataFrame]:
    """The seven layers of one operator's package, full field names, working CRS: formatting only, every
    figure comes from the analysis (``results.per_operator[operator]`` for the operator's own view).

    Parameters
    ----------
    results
        :class:`covgap.pipeline.Results` of a run.
    operator
        An operator of :func:`partner_operators` (measured, or owning fibre routes).

    Returns
    -------
    dict of layer name (``LAYERS``) → GeoDataFrame. Columns follow ``FIELDS`` and the
    configured administrative levels.
    """
    return _in_order(_own_layers(results, operator), shared_layers(results))


def _own_layers(results, operator: str) -> dict[str, gpd.GeoDataFrame]:
    """The layers of :func:`partner_layers` that are the operator's own."""
    if operator not in results.per_operator:
        raise ValueError(f"operator {operator!r} is neither measured nor an owner of fibre routes: "
                         f"{results.partner_operators}")
    levels = list(results.config.inputs.communes)
    return {
        "dead_zones": _gap_zones_layer(results, operator, "no_service"),
        "no_4g_zones": _gap_zones_layer(results, operator, "no_4g"),
        "villages_without_4g": _villages_without_4g_layer(results, operator, levels),
        "fibre_plan": _fibre_plan_layer(results, operator, levels),
    }


def _in_order(own: dict, shared: dict) -> dict:
    """An operator's layers and the shared ones, in the package's order (:data:`LAYERS`)."""
    return {name: own[name] if name in own else shared[name] for name in LAYERS}


def shared_layers(results) -> dict[str, gpd.GeoDataFrame]:
    """The layers of :func:`partner_layers` that are the same in every operator's package (worked out and
    prepared once for all the packages of a run: :func:`write_partner_packages`)."""
    levels = list(results.config.inputs.communes)
    return {
        "needs_measurement": _needs_measurement_layer(results, levels),
        "villages_below_fibre_goal": _below_fibre_goal_layer(results, levels),
        "communes_without_fibre": _communes_without_fibre_layer(results),
    }


_ZONE_COLS = ["zone_id", "scope", "operator", "area_km2", "n_cells", "n_villages", "villages", "households_in_zone",
              "n_samples", "operator_n_samples", "operator_share_4g", "operator_rsrp_dbm_p50", "operator_rscp_dbm_p50",
              "first_measured", "last_measured"]


def _gap_zones_layer(results, operator: str, kind: str) -> gpd.GeoDataFrame:
    """Dead zones (``kind = 'no_service'``) or no-4G zones (``'no_4g'``): this operator's own and the district's."""
    grid = results.layers.grid
    district = ((results.zones, results.zone_operators) if kind == "no_service"
                else (results.no4g_zones, results.no4g_zone_operators))
    own_desc, own_ops = results.per_operator[operator].zones[kind]
    frames = []
    for zones, per_op, scope in ((own_desc, own_ops, SCOPE_OPERATOR), (*district, SCOPE_ALL)):
        if zones.empty:
            continue
        mine = per_op[per_op["operator"] == operator].set_index("zone_id") if len(per_op) else pd.DataFrame()
        z = pd.DataFrame({
            "zone_id": zones["zone_id"].astype(str).to_numpy(),
            "scope": scope,
            "operator": operator,
            "area_km2": zones["area_km2"].to_numpy(dtype=float),
            "n_cells": zones["n_cells"].to_numpy(dtype=np.int64),
            "n_villages": zones["n_villages"].to_numpy(dtype=np.int64),
            "villages": zones["villages"].astype(str).to_numpy(),
            "households_in_zone": zones["households"].to_numpy(dtype=float),
            "n_samples": zones["n_samples"].to_numpy(dtype=np.int64),
            "operator_n_samples": (mine["n_samples"].reindex(zones["zone_id"]).fillna(0).to_numpy(dtype=np.int64)
                                   if len(mine) else 0),
            **{f"operator_{c}": (mine[c].reindex(zones["zone_id"]).to_numpy(dtype=float) if len(mine) else np.nan)
               for c in ("share_4g", "rsrp_dbm_p50", "rscp_dbm_p50")},
            "first_measured": utc_times(zones["t_first_s"].to_numpy()).to_numpy(),
            "last_measured": utc_times(zones["t_last_s"].to_numpy()).to_numpy(),
        })
        frames.append(gpd.GeoDataFrame(z, geometry=zones.geometry.to_numpy(), crs=grid.crs))
    if not frames:
        return _empty(_ZONE_COLS, grid.crs)
    return gpd.GeoDataFrame(pd.concat(frames, ignore_index=True), geometry="geometry", crs=grid.crs)


def _villages_without_4g_layer(results, operator: str, levels: list[str]) -> gpd.GeoDataFrame:
    v = results.villages
    own = results.per_operator[operator].villages
    fails_all = (v["verdict_4g"] == Verdict.FAILS.value).to_numpy()
    fails_op = (own["verdict_4g"] == Verdict.FAILS.value).to_numpy()
    frame = pd.DataFrame({
        "village_id": v["village_id"].astype(str).to_numpy(),
        "name": v["name"].astype(str).to_numpy(),
        **{level: v[level].astype(str).to_numpy() for level in levels},
        "households": v["households"].to_numpy(dtype=float),
        "fails_for": np.where(fails_all & fails_op, FAILS_BOTH, np.where(fails_op, SCOPE_OPERATOR, SCOPE_ALL)),
        "verdict_4g": v["verdict_4g"].to_numpy(),
        "share_covered": v["share_covered"].to_numpy(dtype=float),
        "share_weak": v["share_weak"].to_numpy(dtype=float),
        "share_no_4g": v["share_no_4g"].to_numpy(dtype=float),
        "share_dead": v["share_dead"].to_numpy(dtype=float),
        "evidence_share": v["evidence_share"].to_numpy(dtype=float),
        "share_unmeasured": v["share_unmeasured"].to_numpy(dtype=float),
        "households_in_dead_zones": v["households_in_dead_zones"].to_numpy(dtype=float),
        "operator_verdict_4g": own["verdict_4g"].to_numpy(),
        "operator_share_covered": own["share_covered"].to_numpy(dtype=float),
        "operator_share_weak": own["share_weak"].to_numpy(dtype=float),
        "operator_share_no_4g": own["share_no_4g"].to_numpy(dtype=float),
        "operator_share_dead": own["share_dead"].to_numpy(dtype=float),
        "operator_share_unmeasured": own["share_unmeasured"].to_numpy(dtype=float),
        "operator_households_in_dead_zones": own["households_in_dead_zones"].to_numpy(dtype=float),
        "operator_n_samples": own["n_samples"].to_numpy(dtype=np.int64),
    })
    keep = fails_all | fails_op
    return gpd.GeoDataFrame(frame[keep].reset_index(drop=True), geometry=v.geometry.to_numpy()[keep], crs=v.crs)


def _needs_measurement_layer(results, levels: list[str]) -> gpd.GeoDataFrame:
    nm = results.needs_measurement
    # Every administrative level, as in the village layers (the run's layer carries only the report level).
    units = results.villages.drop_duplicates("village_id").set_index("village_id")
    ids = nm["village_id"].astype(str)
    units.index = units.index.astype(str)
    frame = pd.DataFrame({
        "village_id": ids.to_numpy(),
        "name": nm["name"].astype(str).to_numpy(),
        **{level: units[level].reindex(ids).astype(str).to_numpy() for level in levels},
        "households": nm["households"].to_numpy(dtype=float),
        "unmeasured_area_km2": nm["area_km2"].to_numpy(dtype=float),
    })
    return gpd.GeoDataFrame(frame, geometry=nm.geometry.to_numpy(), crs=nm.crs)


def _below_fibre_goal_layer(results, levels: list[str]) -> gpd.GeoDataFrame:
    v = results.villages
    frame = pd.DataFrame({
        "village_id": v["village_id"].astype(str).to_numpy(),
        "name": v["name"].astype(str).to_numpy(),
        **{level: v[level].astype(str).to_numpy() for level in levels},
        "households": v["households"].to_numpy(dtype=float),
        "households_passed": v["households_passed"].to_numpy(dtype=float),
        "fibre_share": v["fibre_share"].to_numpy(dtype=float),
        "dist_to_fibre_m": v["dist_to_fibre_m"].to_numpy(dtype=float),
        "spur_length_m": v["spur_length_m"].to_numpy(dtype=float),
        "dist_to_planned_fibre_m": pd.to_numeric(v["dist_to_planned_fibre_m"], errors="coerce").to_numpy(dtype=float),
    })
    keep = ~v["meets_fibre_goal"].astype(bool).to_numpy()
    return gpd.GeoDataFrame(frame[keep].reset_index(drop=True), geometry=v.geometry.to_numpy()[keep], crs=v.crs)


def _fibre_plan_layer(results, operator: str, levels: list[str]) -> gpd.GeoDataFrame:
    """The spurs of the fibre plan whose nearest existing route is this operator's (``route_operator``)."""
    s = results.fibre_plan.spurs
    keep = ((s["route_operator"] == operator) & s.geometry.notna()).to_numpy()
    units = results.villages.iloc[s["village"].to_numpy(dtype=np.int64)]
    frame = pd.DataFrame({
        "village_id": s["village_id"].astype(str).to_numpy(),
        "name": s["name"].astype(str).to_numpy(),
        **{level: units[level].astype(str).to_numpy() for level in levels},
        "households": s["households"].to_numpy(dtype=float),
        "households_passed": s["households_passed"].to_numpy(dtype=float),
        "households_gained": s["households_gained"].to_numpy(dtype=float),
        "spur_length_m": s["spur_length_m"].to_numpy(dtype=float),
        "spur_straight_m": s["spur_straight_m"].to_numpy(dtype=float),
        "spur_along": s["spur_along"].astype(str).to_numpy(),
        "cost_vnd": s["cost_vnd"].to_numpy(dtype=float),
        "cost_vnd_per_household": s["cost_vnd_per_household"].to_numpy(dtype=float),
        "route_id": s["route_id"].astype(str).to_numpy(),
        "in_district_plan": s["in_district_plan"].astype(int).to_numpy(),
        "in_unit_plan": s["in_unit_plan"].astype(int).to_numpy(),
    })
    return gpd.GeoDataFrame(frame[keep].reset_index(drop=True), geometry=s.geometry.to_numpy()[keep], crs=s.crs)


def _communes_without_fibre_layer(results) -> gpd.GeoDataFrame:
    c = results.communes
    keep = ~c["communes_reached"].astype(bool).to_numpy()
    frame = pd.DataFrame({
        "commune_id": c["commune_id"].astype(str).to_numpy(),
        "name": c["name"].astype(str).to_numpy(),
        "centre_source": c["centre_source"].astype(str).to_numpy(),
        "centre_dist_to_fibre_m": c["centre_dist_to_fibre_m"].to_numpy(dtype=float),
        "households": c["households"].to_numpy(dtype=float),
        "households_passed": c["households_passed"].to_numpy(dtype=float),
        "fibre_share": c["fibre_share"].to_numpy(dtype=float),
    })
    centres = gpd.GeoSeries(c["centre"], crs=c.crs).to_numpy()
    return gpd.GeoDataFrame(frame[keep].reset_index(drop=True), geometry=centres[keep], crs=c.crs)


def _empty(columns: list[str], crs) -> gpd.GeoDataFrame:
    return gpd.GeoDataFrame({c: pd.Series([], dtype=_dtype(FIELDS[c].kind)) for c in columns}, geometry=[], crs=crs)


def _dtype(kind: str):
    return {"str": object, "int": np.int32, "float": np.float64, "datetime": "datetime64[ms, UTC]"}[kind]


# --------------------------------------------------------------------------- writing
_GEOMETRY_TYPES = {"communes_without_fibre": "Point", "fibre_plan": "LineString"}

#: Colour (fill or line, RGB) of each layer, as on the planner maps (templates/map.js COLOURS).
LAYER_COLOURS = {
    "dead_zones": (178, 24, 43), "no_4g_zones": (197, 27, 125), "villages_without_4g": (215, 25, 28),
    "needs_measurement": (106, 81, 163), "villages_below_fibre_goal": (66, 146, 198),
    "communes_without_fibre": (215, 25, 28), "fibre_plan": (230, 97, 1),
}


def layer_qml(layer: str) -> str:
    """A QGIS style (.qml) for one partner layer, in the colours of the maps: translucent fill and solid
    outline for polygons, a line for spurs, a dot for commune centres."""
    r, g, b = LAYER_COLOURS[layer]
    kind = _GEOMETRY_TYPES.get(layer, "MultiPolygon")
    if kind == "Point":
        symbol, props = "marker", {"name": "circle", "color": f"{r},{g},{b},255", "size": "3",
                                   "outline_color": "0,0,0,255"}
        cls = "SimpleMarker"
    elif kind == "LineString":
        symbol, props = "line", {"line_color": f"{r},{g},{b},255", "line_width": "0.8", "line_style": "dash"}
        cls = "SimpleLine"
    else:
        symbol, props = "fill", {"color": f"{r},{g},{b},110", "outline_color": f"{r},{g},{b},255",
                                 "outline_width": "0.4", "style": "solid"}
        cls = "SimpleFill"
    options = "\n".join(f'            <Option type="QString" name="{k}" value="{v}"/>' for k, v in props.items())
    return f"""<!DOCTYPE qgis PUBLIC 'http://mrcc.com/qgis.dtd' 'SYSTEM'>
<qgis version="3.28" styleCategories="Symbology">
  <renderer-v2 type="singleSymbol" symbollevels="0" enableorderby="0" forceraster="0">
    <symbols>
      <symbol type="{symbol}" name="0" alpha="1" clip_to_extent="1" force_rhr="0">
        <layer class="{cls}" enabled="1" pass="0" locked="0">
          <Option type="Map">
{options}
          </Option>
        </layer>
      </symbol>
    </symbols>
  </renderer-v2>
</qgis>
"""


def write_layer_styles(gpkg: Path, layers: list[str], *, stamp: str) -> None:
    """The QGIS ``layer_styles`` table in the GeoPackage (QGIS applies each layer's default style on
    opening), registered in ``gpkg_contents`` as an attributes table so GDAL lists it too."""
    import sqlite3

    with contextlib.closing(sqlite3.connect(gpkg)) as db, db:
        db.execute("PRAGMA synchronous = OFF")  # synced with the whole output folder
        db.execute("""CREATE TABLE IF NOT EXISTS layer_styles (id INTEGER PRIMARY KEY AUTOINCREMENT,
                      f_table_catalog TEXT, f_table_schema TEXT, f_table_name TEXT, f_geometry_column TEXT,
                      styleName TEXT, styleQML TEXT, styleSLD TEXT, useAsDefault BOOLEAN, description TEXT,
                      owner TEXT, ui TEXT, update_time DATETIME)""")
        for layer in layers:
            db.execute("INSERT INTO layer_styles (f_table_catalog, f_table_schema, f_table_name, f_geometry_column, "
                       "styleName, styleQML, styleSLD, useAsDefault, description, owner, ui, update_time) "
                       "VALUES ('', '', ?, 'geom', ?, ?, '', 1, 'covgap: the colours of the planner maps', '', '', ?)",
                       (layer, layer, layer_qml(layer), stamp))
        db.execute("INSERT OR REPLACE INTO gpkg_contents (table_name, data_type, identifier, description, last_change) "
                   "VALUES ('layer_styles', 'attributes', 'layer_styles', 'QGIS layer styles', ?)", (stamp,))


def _prepare(layer: gpd.GeoDataFrame, specs: dict[str, FieldSpec], crs: str) -> gpd.GeoDataFrame:
    """Fixed dtypes, rounded figures, export CRS."""
    out = {}
    for col in layer.columns:
        if col == "geometry":
            continue
        spec = specs[col]
        values = layer[col]
        if spec.kind == "str":
            out[col] = values.astype(object).where(values.notna(), None)
        elif spec.kind == "int":
            out[col] = values.fillna(0).astype(np.int32)
        elif spec.kind == "datetime":
            out[col] = pd.to_datetime(values, utc=True).astype("datetime64[ms, UTC]")
        else:
            vals = values.astype(np.float64)
            out[col] = vals.round(_ROUND.get(col, 4))
    frame = gpd.GeoDataFrame(pd.DataFrame(out, index=layer.index), geometry=layer.geometry.to_numpy(), crs=layer.crs)
    return frame.to_crs(crs)


def local_dates(times: pd.Series, timezone: str) -> pd.Series:
    """The local calendar date (Arrow ``date32``, null where unknown) of UTC date-times: a shapefile Date field."""
    import pyarrow as pa

    days = pd.to_datetime(times, utc=True).dt.tz_convert(timezone).dt.date
    return pd.Series(pa.array(days.where(days.notna(), None).tolist(), type=pa.date32()),
                     index=times.index, dtype=pd.ArrowDtype(pa.date32()))


def _dbf_safe(text: str | None) -> str | None:
    """Cut a string to the 254 bytes a .dbf field holds, at a character boundary (full text stays in the GeoPackage)."""
    if text is None:
        return None
    raw = text.encode("utf-8")
    if len(raw) <= DBF_MAX_BYTES:
        return text
    cut = raw[:DBF_MAX_BYTES - len("…".encode())].decode("utf-8", errors="ignore")
    return cut + "…"


def _inside(folder: Path, name: str) -> Path:
    """``folder / name``, refusing anything that would land outside ``folder``."""
    path = folder / name
    if Path(name).is_absolute() or ".." in Path(name).parts or path.resolve().parent != folder.resolve():
        raise OutputError(f"{folder}: refusing to write '{name}' outside the package folder")
    return path


#: The files of one layer in a package: the Shapefile's own, and the QGIS style beside it.
SHAPEFILE_PARTS = (".shp", ".shx", ".dbf", ".prj", ".cpg", ".qml")


def write_partner_packages(results, folder: Path, *, generated: str | None = None) -> list[Path]:
    """Write one package folder and one zip per operator into ``folder``.

    Parameters
    ----------
    results
        :class:`covgap.pipeline.Results` of a run.
    folder
        Where ``<slug>/`` and ``<slug>.zip`` go (created if needed; normally
        ``<output>/partners`` inside the run's temporary output folder).
    generated
        Generation time written in README.txt (default: now, local time).

    Returns
    -------
    The zip files written, one per operator, in operator order.
    """
    started = time.monotonic()
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    generated = generated or time.strftime("%Y-%m-%dT%H:%M:%S%z")
    inputs = input_hashes(results)
    zips = []
    prepared: dict[str, gpd.GeoDataFrame] = {}  # the shared layers, prepared by the first package for the others
    written: dict[str, Path] = {}  # ... and their shapefiles, written by it and copied by the others
    for operator, slug in package_slugs(results.partner_operators).items():
        package = _inside(folder, slug)
        package.mkdir()
        counts = write_partner_package(results, operator, package, generated=generated, inputs=inputs, prepared=prepared,
                                       written=written)
        zip_path = _inside(folder, f"{slug}.zip")
        zip_folder(package, zip_path)
        zips.append(zip_path)
        log.info("partner package %s (%s): %s; %d bytes zipped", slug, operator,
                 ", ".join(f"{k} {v}" for k, v in counts.items()), zip_path.stat().st_size)
    log.info("partner packages: %d operators in %.1f s", len(zips), time.monotonic() - started)
    return zips


def write_partner_package(results, operator: str, package: Path, *, generated: str, inputs: list[tuple[str, str]] | None = None,
                          prepared: dict[str, gpd.GeoDataFrame] | None = None,
                          written: dict[str, Path] | None = None) -> dict[str, int]:
    """Write one operator's layers (Shapefiles + GeoPackage), fields.csv and README.txt into ``package``.

    ``prepared``: the layers every package shares (:func:`shared_layers`), ready to write; filled in
    when empty (by the first package of a run; about 0.025 s of each package after it on the sample).
    ``written``: where the shared layers' shapefiles were written already (layer name → package folder),
    copied from there instead of written again (the same bytes: the .dbf's date is the data's, not the
    clock's); filled in as they are written. Returns the feature count of each layer.
    """
    package = Path(package)
    cfg = results.config
    crs = cfg.output.export_crs
    specs = {**FIELDS, **level_fields(list(cfg.inputs.communes))}
    own = {name: _prepare(layer, specs, crs) for name, layer in _own_layers(results, operator).items()}
    if not prepared:
        shared = {name: _prepare(layer, specs, crs) for name, layer in shared_layers(results).items()}
        if prepared is not None:
            prepared.update(shared)
    else:
        shared = prepared
    layers = _in_order(own, shared)
    slug = package.name
    stamp_date, stamp_time = _stamps(results)
    gpkg = _inside(package, f"{slug}.gpkg")
    with geopackage_writing(OGR_CURRENT_DATE=stamp_time):
        for name, layer in layers.items():
            gtype = _GEOMETRY_TYPES.get(name, "MultiPolygon")
            pyogrio.write_dataframe(layer, gpkg, layer=name, driver="GPKG", geometry_type=gtype,
                                    promote_to_multi=gtype == "MultiPolygon")
    write_field_aliases(gpkg, {name: [c for c in layer.columns if c != "geometry"] for name, layer in layers.items()}, specs)
    write_layer_styles(gpkg, list(layers), stamp=stamp_time)
    rows = []
    for name, layer in layers.items():
        for full in layer.columns:
            if full != "geometry":
                s = specs[full]
                rows.append([name, s.short, full, _TYPE_NAMES[s.kind], s.unit, s.vi, s.en])
        if written is not None and name in written:  # a shared layer another package has written: the same files
            for ext in SHAPEFILE_PARTS:
                source = _inside(written[name], f"{name}{ext}")
                if source.exists():
                    shutil.copyfile(source, _inside(package, f"{name}{ext}"))
            continue
        short = layer.rename(columns={c: specs[c].short for c in layer.columns if c != "geometry"})
        dates = False
        for col, full in zip(short.columns, layer.columns):
            if col != "geometry" and specs[full].kind == "str":
                short[col] = short[col].map(_dbf_safe)
            elif col != "geometry" and specs[full].kind == "datetime":
                short[col], dates = local_dates(short[col], cfg.study.timezone), True
        gtype = _GEOMETRY_TYPES.get(name, "MultiPolygon")
        # A date column is written through Arrow: its date32 type is the one way to make GDAL write a
        # shapefile Date field (the NumPy path asks for DateTime, which the driver turns into text).
        pyogrio.write_dataframe(short, _inside(package, f"{name}.shp"), driver="ESRI Shapefile", encoding="UTF-8",
                                geometry_type=gtype, promote_to_multi=gtype == "MultiPolygon",
                                layer_options={"DBF_DATE_LAST_UPDATE": stamp_date}, use_arrow=dates)
        _inside(package, f"{name}.qml").write_text(layer_qml(name), encoding="utf-8")  # QGIS opens it with the .shp
        if written is not None and name in shared:
            written[name] = package
    write_fields_csv(rows, _inside(package, "fields.csv"))
    counts = {name: len(layer) for name, layer in layers.items()}
    readme = partner_readme(results, operator, counts=counts, generated=generated,
                            inputs=input_hashes(results) if inputs is None else inputs, gpkg_name=gpkg.name)
    # Names come from data: a NUL or other control character would make the text unreadable in some viewers.
    _inside(package, "README.txt").write_text(strip_control_characters(readme), encoding="utf-8", newline="\n")
    return counts


def write_field_aliases(gpkg: Path, columns: dict[str, list[str]], specs: dict[str, FieldSpec]) -> None:
    """Field aliases in the GeoPackage (``gpkg_data_columns``, the GeoPackage schema extension): the
    Vietnamese meaning as the alias QGIS and ArcGIS show (``name``), the English one as ``title``,
    both with the unit in ``description``."""
    import sqlite3

    with contextlib.closing(sqlite3.connect(gpkg)) as db, db:
        db.execute("PRAGMA synchronous = OFF")  # synced with the whole output folder
        db.execute("""CREATE TABLE IF NOT EXISTS gpkg_extensions (table_name TEXT, column_name TEXT,
                      extension_name TEXT NOT NULL, definition TEXT NOT NULL, scope TEXT NOT NULL,
                      CONSTRAINT ge_tce UNIQUE (table_name, column_name, extension_name))""")
        db.execute("""CREATE TABLE IF NOT EXISTS gpkg_data_columns (table_name TEXT NOT NULL, column_name TEXT NOT NULL,
                      name TEXT, title TEXT, description TEXT, mime_type TEXT, constraint_name TEXT,
                      CONSTRAINT pk_gdc PRIMARY KEY (table_name, column_name),
                      CONSTRAINT gdc_tn UNIQUE (table_name, name))""")
        db.execute("INSERT OR IGNORE INTO gpkg_extensions VALUES ('gpkg_data_columns', NULL, 'gpkg_schema', "
                   "'http://www.geopackage.org/spec/#extension_schema', 'read-write')")
        for table, cols in columns.items():
            used: set[str] = set()
            for col in cols:
                s = specs[col]
                alias = s.vi if s.vi not in used else f"{s.vi} ({col})"
                used.add(alias)
                unit = f" [{s.unit}]" if s.unit else ""
                db.execute("INSERT OR REPLACE INTO gpkg_data_columns (table_name, column_name, name, title, description) "
                           "VALUES (?, ?, ?, ?, ?)", (table, col, alias, s.en, f"{s.vi}{unit} / {s.en}{unit}"))


def write_fields_csv(rows: list[list[str]], path: Path) -> None:
    """The data dictionary: one row per layer and shapefile field."""
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow(["layer", "field", "full_name", "type", "unit", "meaning_vi", "meaning_en"])
    writer.writerows(rows)
    path.write_text(buf.getvalue(), encoding="utf-8", newline="\n")


def zip_folder(package: Path, zip_path: Path) -> None:
    """Zip ``package`` as ``<name>/<file>`` entries: sorted, fixed timestamps and permissions."""
    files = sorted(p for p in package.rglob("*") if p.is_file())
    with zipfile.ZipFile(zip_path, "w") as zf:
        for path in files:
            rel = path.relative_to(package).as_posix()
            arcname = f"{package.name}/{rel}"
            if arcname.startswith("/") or ".." in arcname.split("/"):  # pragma: no cover - slugs cannot do this
                raise OutputError(f"{zip_path}: refusing the zip entry name '{arcname}'")
            info = zipfile.ZipInfo(arcname, date_time=ZIP_DATE_TIME)
            # README.txt (the only file with a varying part, its generation time) is stored, not deflated, so
            # its entry keeps the same size and every other byte of the zip stays the same from run to run.
            info.compress_type = zipfile.ZIP_STORED if rel == "README.txt" else zipfile.ZIP_DEFLATED
            info.create_system = 3  # Unix, whatever the machine
            info.external_attr = 0o644 << 16
            zf.writestr(info, path.read_bytes(), compresslevel=6)  # zlib's default: 9 took 2–2.5× longer for 0.4% less


def _stamps(results) -> tuple[str, str]:
    """The date (DBF header) and UTC time (GeoPackage) of the last measurement: stamps that depend only on the data."""
    last = results.data_period[1]
    if last is None or not np.isfinite(last):
        return "2000-01-01", "2000-01-01T00:00:00Z"
    ts = pd.Timestamp(int(last), unit="s", tz="UTC")
    return ts.tz_convert(results.config.study.timezone).strftime("%Y-%m-%d"), ts.strftime("%Y-%m-%dT%H:%M:%SZ")


def input_hashes(results) -> list[tuple[str, str]]:
    """``(name, sha256)`` of every input file: layers, population raster, measurement files.

    Names are relative to the configuration's folder where possible, so no absolute
    path of the analyst's machine reaches a partner. A measurement file's hash is the one
    recorded when it was taken in (the bytes the results come from; no second read of
    gigabytes); the layers are hashed now.
    """
    base = Path(results.config.source).parent if results.config.source else None
    paths = [*results.layers.input_files, *getattr(results.report, "paths", [])]
    recorded = getattr(results.report, "sha256", {})
    out, seen = [], set()
    for p in paths:
        p = Path(p)
        if p in seen:
            continue
        seen.add(p)
        try:
            name = p.resolve().relative_to(base.resolve()).as_posix() if base else p.name
        except ValueError:
            name = p.name
        # A measurement file taken in by an earlier refresh may have been moved since: say so, do not drop it.
        sha = recorded.get(str(p.resolve()))
        out.append((name, sha or (sha256_file(p) if p.is_file() else "(not found when the package was written)")))
    return out


# --------------------------------------------------------------------------- CRS notes
#: The VN-2000 → WGS 84 datum transformation of Decision 05/2007/QĐ-BTNMT (the Ministry of Natural
#: Resources and Environment's 7 parameters, coordinate frame rotation: ΔX −191.90441429 m,
#: ΔY −39.30318279 m, ΔZ −111.45032835 m, rotations −0.00928836″ 0.01975479″ −0.00427372″,
#: scale 0.252906278 ppm): EPSG:6960 "VN-2000 to WGS 84 (2)", which PROJ's database (proj.db) aliases
#: to the ESRI name ArcGIS lists, "VN_2000_To_WGS_1984_2". Checked in tests against pyproj.
VN2000_TRANSFORMATION = {"epsg": 6960, "name": "VN-2000 to WGS 84 (2)", "esri": "VN_2000_To_WGS_1984_2"}
#: The other VN-2000 → WGS 84 transformation ArcGIS lists: EPSG:5194, "Used by Total in Mekong delta".
VN2000_OTHER_TRANSFORMATION = {"epsg": 5194, "name": "VN-2000 to WGS 84 (1)", "esri": "VN_2000_To_WGS_1984_1"}
#: EPSG code of the geographic CRS VN-2000 (datum "Vietnam 2000").
VN2000_GEOGRAPHIC = 4756


def is_vn2000(crs) -> bool:
    """Is ``crs`` (anything pyproj takes) on the VN-2000 datum (e.g. EPSG:3405, 3406, 5896-5899, 9205-9218)?"""
    from pyproj import CRS

    geodetic = CRS.from_user_input(crs).geodetic_crs
    if geodetic is None:
        return False
    datum = geodetic.datum.name if geodetic.datum is not None else ""
    return geodetic.to_epsg() == VN2000_GEOGRAPHIC or datum in ("Vietnam 2000", "D_Vietnam_2000")


def describe_crs(crs) -> str:
    """``EPSG:5898 — VN-2000 / TM-3 zone 491 (ESRI .prj: VN_2000_TM-3_zone_491)``: code, name and the
    name ArcGIS reads in a shapefile's .prj."""
    from pyproj import CRS

    c = CRS.from_user_input(crs)
    code = c.to_authority() or ("", "")
    esri = re.match(r'^\w+\["([^"]+)"', c.to_wkt("WKT1_ESRI") or "")
    head = f"{code[0]}:{code[1]} — {c.name}" if code[0] else c.name
    return head + (f" (ESRI .prj: {esri.group(1)})" if esri and esri.group(1) != c.name else "")


def crs_readme_lines(results, gpkg_name: str) -> list[str]:
    """The README section on coordinate systems: the CRS of each file of the package, the working
    CRS of the analysis and, where either is on the VN-2000 datum, which datum transformation to
    choose in ArcGIS (and which one covgap's own conversions used)."""
    from pyproj.transformer import TransformerGroup

    export, working = results.config.output.export_crs, results.layers.crs
    files = ", ".join(f"{name}.shp (+ .prj)" for name in LAYERS)
    lines = [
        "HỆ TOẠ ĐỘ / COORDINATE REFERENCE SYSTEMS",
        f"  {describe_crs(export)}:",
        f"    {files}, {gpkg_name} ({len(LAYERS)} lớp / layers)",
        "  fields.csv, README.txt: không có toạ độ / no coordinates",
        f"  Phân tích tính trên / analysis computed in: {describe_crs(working)} ([study] crs)",
    ]
    if not (is_vn2000(export) or is_vn2000(working)):
        return [*lines, ""]
    t, other = VN2000_TRANSFORMATION, VN2000_OTHER_TRANSFORMATION
    used = TransformerGroup(VN2000_GEOGRAPHIC, 4326, always_xy=True).transformers[0]  # PROJ's first choice
    used_codes = {op.to_json_dict().get("id", {}).get("code") for op in (used.operations or ())}
    said = (f"covgap (PROJ) đã dùng EPSG:{t['epsg']} khi chuyển giữa VN-2000 và WGS 84 / covgap (PROJ) used "
            f"EPSG:{t['epsg']} between VN-2000 and WGS 84" if t["epsg"] in used_codes else
            f"covgap (PROJ) đã dùng / covgap (PROJ) used: {used.description}")
    lines += [
        f"  VN-2000 → WGS 84: ArcGIS ({t['esri']}) = EPSG:{t['epsg']} \"{t['name']}\"",
        "  VI: Khi ArcGIS hỏi phép chuyển đổi hệ quy chiếu (Geographic Transformation) giữa VN-2000 và WGS 84, "
        f"chọn {t['esri']}: 7 tham số Helmert của Quyết định 05/2007/QĐ-BTNMT. Không chọn {other['esri']} "
        f"(EPSG:{other['epsg']}, tham số của Total cho đồng bằng sông Cửu Long). QGIS: chọn EPSG:{t['epsg']}.",
        "  EN: When ArcGIS asks for the geographic transformation between VN-2000 and WGS 84, choose "
        f"{t['esri']}: the 7-parameter Helmert of Decision 05/2007/QĐ-BTNMT. Not {other['esri']} "
        f"(EPSG:{other['epsg']}, Total's parameters for the Mekong delta). QGIS: pick EPSG:{t['epsg']}.",
        f"  {said}.",
        "",
    ]
    return lines


_LAYER_TEXT = {
    "dead_zones": (
        "Vùng lõm sóng (mất sóng): đủ mẫu đo và không công nghệ nào dùng được (4G dưới dead_dbm, 3G dưới usable_3g_dbm, "
        "2G dưới usable_2g_dbm) hoặc ứng dụng ghi 'không có mạng'. scope = 'operator': của riêng nhà mạng này; "
        "scope = 'all_operators': không nhà mạng nào có sóng dùng được.",
        "Dead zones (no service): enough samples and no technology usable (4G below dead_dbm, 3G below usable_3g_dbm, "
        "2G below usable_2g_dbm) or the app logged 'no service'. scope = 'operator': this operator alone; "
        "scope = 'all_operators': no operator has usable service.",
    ),
    "no_4g_zones": (
        "Vùng không có 4G (chỉ 2G/3G): đủ mẫu đo, 4G không dùng được hoặc phần lớn mẫu không ở trên 4G, nhưng 3G/2G dùng "
        "được (op_rscp50 ≥ usable_3g_dbm). Vẫn có dịch vụ thoại và dữ liệu chậm, nhưng chưa đạt mục tiêu 4G. "
        "scope như lớp dead_zones.",
        "No-4G zones (2G/3G only): enough samples, 4G not usable or most samples not on 4G, but 3G/2G usable "
        "(op_rscp50 ≥ usable_3g_dbm). Voice and slow data work, the 4G target is not met. scope as in dead_zones.",
    ),
    "villages_without_4g": (
        "Thôn chưa đạt mục tiêu 4G với nhà mạng này (op_verdict) hoặc với mọi nhà mạng (verdict_4g); fails_for cho biết "
        "trường hợp nào; có số hộ, tỷ lệ hộ ở ô đã đo đủ và tỷ lệ diện tích có sóng / yếu / không 4G / mất sóng / chưa đo.",
        "Villages failing the 4G target for this operator (op_verdict) or for all operators (verdict_4g); fails_for "
        "says which; with households, the share of households in measured cells and the shares of area covered / weak / "
        "no 4G / no service / unmeasured.",
    ),
    "needs_measurement": (
        "Phần diện tích thôn chưa đủ mẫu đo (mọi nhà mạng gộp lại): cần đo thêm trước khi kết luận.",
        "Village areas without enough samples (all operators together): measure there before drawing conclusions.",
    ),
    "villages_below_fibre_goal": (
        "Thôn có tỷ lệ hộ được cáp quang đi qua chưa vượt mục tiêu; có số hộ, số hộ được đi qua, tỷ lệ, khoảng "
        "cách đến cáp quang và chiều dài nhánh cáp cần thêm.",
        "Villages whose share of households passed by fibre does not exceed the goal; with households, households "
        "passed, the share, the distance to fibre and the spur length needed.",
    ),
    "communes_without_fibre": (
        "Trung tâm xã (điểm) chưa được cáp quang hiện có đi tới trong khoảng cách quy định.",
        "Commune centres (points) not within reach of an existing fibre route.",
    ),
    "fibre_plan": (
        "Kế hoạch cáp quang: nhánh cáp (đường) từ tuyến hiện có gần nhất của nhà mạng này đến thôn chưa đạt mục tiêu, "
        "theo đường giao thông nếu có lớp đường; số hộ thêm được, chi phí, chi phí mỗi hộ; in_dist/in_unit = 1 khi nhánh "
        "thuộc tập nhánh rẻ nhất để huyện/xã vượt mục tiêu.",
        "Fibre plan: spurs (lines) from this operator's nearest existing route to the villages below the goal, along roads "
        "where a road layer is given; households gained, cost, cost per household; in_dist/in_unit = 1 when the spur is "
        "in the least-cost set that takes the district/commune past the goal.",
    ),
}


def partner_readme(results, operator: str, *, counts: dict[str, int], generated: str,
                   inputs: list[tuple[str, str]], gpkg_name: str) -> str:
    """README.txt of one package, in Vietnamese then English."""
    cfg = results.config
    tz = cfg.study.timezone
    first, last = (format_time(np.array([t]), tz).iloc[0] or "?" for t in results.data_period)
    sig, dz, vc, fib = cfg.signal, cfg.dead_zones, cfg.villages, cfg.fibre
    thresholds = [
        ("covered_dbm", f"{sig.covered_dbm:g} dBm", "ô có sóng 4G tốt khi trung vị RSRP ≥ ngưỡng",
         "a cell is covered when its median RSRP is at or above this"),
        ("dead_dbm", f"{sig.dead_dbm:g} dBm", "4G dùng được khi trung vị RSRP ≥ ngưỡng; giữa hai ngưỡng là sóng 4G yếu",
         "4G is usable when its median RSRP is at or above this; between the two levels it is weak 4G"),
        ("usable_3g_dbm", f"{sig.usable_3g_dbm:g} dBm", "3G dùng được khi trung vị RSCP ≥ ngưỡng (ô không có 4G dùng được "
         "thì là 'không có 4G', không phải 'mất sóng')", "3G is usable when its median RSCP is at or above this (a cell "
         "without usable 4G is then 'no 4G', not 'no service')"),
        ("usable_2g_dbm", f"{sig.usable_2g_dbm:g} dBm", "2G dùng được khi trung vị RxLev ≥ ngưỡng",
         "2G is usable when its median RxLev is at or above this"),
        ("min_samples", f"{sig.min_samples}", "số mẫu tối thiểu mỗi ô, mỗi nhà mạng", "fewest samples per cell and operator"),
        ("min_time_spread_hours", f"{sig.min_time_spread_hours:g} h", "khoảng thời gian tối thiểu giữa mẫu đầu và cuối (0 = không xét)",
         "least time between first and last sample (0 = not used)"),
        ("cell_size_m", f"{cfg.grid.cell_size_m:g} m", "cạnh ô lưới", "grid cell side"),
        ("min_area_km2", f"{dz.min_area_km2:g} km²", "diện tích tối thiểu của vùng lõm sóng", "smallest dead zone kept"),
        ("connectivity", f"{dz.connectivity}", "ô nối theo cạnh (4) hoặc cả góc (8)", "cells joined by edges (4) or corners too (8)"),
        ("village_min_share", f"{cfg.evidence.village_min_share:g}", "tỷ lệ hộ của thôn ở ô đã đo đủ cần có để kết luận 4G",
         "share of a village's households in measured cells needed for a 4G verdict"),
        ("area_min_share", f"{cfg.evidence.area_min_share:g}", "tỷ lệ hộ ở ô đã đo đủ cần có để kết luận 'không còn vùng lõm'",
         "share of households in measured cells needed to say 'no dead zones'"),
        ("min_covered_share", f"{vc.min_covered_share:g}", "tỷ lệ hộ (ở ô đã đo) có sóng 4G tốt để thôn đạt 4G",
         "share of the measured households in covered cells to meet the 4G target"),
        ("drop_distance_m", f"{fib.drop_distance_m:g} m", "hộ được cáp quang đi qua khi trong khoảng cách này",
         "a household is passed within this distance of an existing route"),
        ("goal_share", f"{fib.goal_share:g}", "mục tiêu: tỷ lệ hộ được đi qua phải vượt mức này", "goal: the passed share must exceed this"),
        ("centre_reach_m", f"{fib.centre_reach_m:g} m", "trung tâm xã được cáp quang tới khi trong khoảng cách này",
         "a commune centre is reached within this distance of an existing route"),
    ]
    lines = [
        f"covgap — gói dữ liệu cho nhà mạng / package for operator: {operator}",
        f"Khu vực / study area: {cfg.study.name}",
        "",
        f"Công cụ / tool: covgap {__version__}",
        f"Thời điểm tạo / generated: {generated}",
        f"Thời gian đo / data period: {first} — {last}",
        f"Hệ toạ độ / CRS: {describe_crs(cfg.output.export_crs)}",
        "",
        *crs_readme_lines(results, gpkg_name),
        "LỚP DỮ LIỆU / LAYERS",
        f"Mỗi lớp là một Shapefile (.shp .shx .dbf .prj .cpg, mã UTF-8; tên trường ≤ 10 ký tự, xem fields.csv) và tất cả "
        f"các lớp nằm trong {gpkg_name} với tên trường đầy đủ.",
        f"Each layer is a Shapefile (.shp .shx .dbf .prj .cpg, UTF-8; field names ≤ 10 characters, see fields.csv); all "
        f"layers are also in {gpkg_name} with full field names.",
        "",
    ]
    for name in LAYERS:
        vi, en = _LAYER_TEXT[name]
        lines += [f"{name} ({counts.get(name, 0)} đối tượng / features)", f"  VI: {vi}", f"  EN: {en}", ""]
    lines += ["NGƯỠNG / THRESHOLDS (covgap.toml)"]
    lines += [f"  {key} = {value}: {vi} / {en}" for key, value, vi, en in thresholds]
    lines += ["", "DỮ LIỆU ĐẦU VÀO / INPUT FILES (SHA-256)"]
    lines += [f"  {digest}  {name}" for name, digest in inputs]
    lines += [
        "",
        "GHI CHÚ / NOTES",
        "  VI: Chuỗi dài hơn 254 byte bị cắt trong .dbf (kết thúc bằng '…'); bản đầy đủ có trong GeoPackage. "
        "Ngày trong tiêu đề .dbf và last_change trong GeoPackage là thời điểm đo cuối cùng, để cùng dữ liệu cho cùng tệp.",
        "  EN: Strings longer than 254 bytes are cut in the .dbf (ending in '…'); the GeoPackage holds them whole. "
        "The .dbf header date and the GeoPackage last_change are the last measurement time, so the same data gives the same files.",
        "",
    ]
    return "\n".join(lines)
