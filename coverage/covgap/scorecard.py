"""Commune and district scorecards against the four targets of DESIGN.md §1."""

from __future__ import annotations

import geopandas as gpd
import numpy as np
import pandas as pd
import shapely

from covgap.villages import Verdict

TARGET_LABELS = {
    "en": {
        "villages_4g": "4G in every village",
        "no_dead_zones": "no dead zones left",
        "fibre_households": "fibre passes > 80% of households",
        "fibre_communes": "fibre reaches every commune",
        "measured": "village area with enough measurements",
    },
    "vi": {
        "villages_4g": "100% thôn có sóng 4G",
        "no_dead_zones": "không còn vùng lõm sóng",
        "fibre_households": "cáp quang đến > 80% hộ gia đình",
        "fibre_communes": "cáp quang đến 100% xã",
        "measured": "diện tích thôn đã đo đủ",
    },
}

STATUS_MET, STATUS_NOT_MET, STATUS_INSUFFICIENT = "met", "not met", "insufficient evidence"


def _unit_figures(v: pd.DataFrame, zones_area_km2: float, zones_count: int, centres_reached: int,
                  centres_total: int, goal_share: float) -> dict:
    """The figures of one unit (a commune or the district) from its villages."""
    n = len(v)
    meets = int((v["verdict_4g"] == Verdict.MEETS.value).sum())
    fails = int((v["verdict_4g"] == Verdict.FAILS.value).sum())
    insufficient = n - meets - fails
    hh = float(v["households"].sum())
    passed = float(v["households_passed"].sum())
    area = float(v["area_km2"].sum())
    measured = float((v["share_measured"] * v["area_km2"]).sum())
    fig = {
        "n_villages": n,
        "villages_meeting_4g": meets,
        "villages_failing_4g": fails,
        "villages_insufficient_4g": insufficient,
        "share_villages_4g": meets / n if n else np.nan,
        "dead_zones": zones_count,
        "dead_zone_area_km2": round(zones_area_km2, 6),
        "households_in_dead_zones": round(float(v["households_in_dead_zones"].sum()), 1),
        "households": int(hh),
        "households_passed": round(passed, 1),
        "fibre_share": passed / hh if hh else np.nan,
        "villages_meeting_fibre_goal": int(v["meets_fibre_goal"].sum()),
        "communes": centres_total,
        "communes_reached": centres_reached,
        "share_communes_reached": centres_reached / centres_total if centres_total else np.nan,
        "share_area_measured": measured / area if area else np.nan,
    }
    if "fibre_subscribed" in v:
        fig["fibre_subscribed"] = int(pd.to_numeric(v["fibre_subscribed"], errors="coerce").fillna(0).sum())
        fig["subscribed_share"] = fig["fibre_subscribed"] / hh if hh else np.nan
    fig["status_villages_4g"] = (STATUS_MET if meets == n and n else STATUS_NOT_MET if fails else STATUS_INSUFFICIENT)
    fig["status_no_dead_zones"] = STATUS_MET if zones_count == 0 else STATUS_NOT_MET
    fig["status_fibre_households"] = STATUS_MET if hh and passed / hh > goal_share else STATUS_NOT_MET
    fig["status_fibre_communes"] = STATUS_MET if centres_total and centres_reached == centres_total else STATUS_NOT_MET
    return fig


def compute_scorecards(villages: pd.DataFrame, zones: gpd.GeoDataFrame, communes: gpd.GeoDataFrame, *, level: str,
                       goal_share: float, study_name: str) -> tuple[pd.DataFrame, pd.DataFrame]:
    """The commune scorecard (one row per commune of ``level``) and the district one (one row).

    ``villages`` carries the indicators of :mod:`covgap.villages` and
    :mod:`covgap.fibre`; ``communes`` carries ``centre_reached``. A dead zone
    that spans two communes counts in both, with its area split between them; the
    district counts it once.

    Notes
    -----
    Target status: *4G in every village* is met when every village meets it, not
    met when any fails, and insufficient evidence when none fails but some lack
    measurements. *No dead zones*: met when there is none. *Fibre households*:
    households passed / households > ``goal_share``. *Fibre communes*: every
    commune centre reached.
    """
    rows = []
    zone_geoms = zones.geometry.to_numpy() if len(zones) else np.empty(0, dtype=object)
    for _, commune in communes.iterrows():
        v = villages[villages[level] == commune["name"]]
        if len(zone_geoms):
            inter = shapely.area(shapely.intersection(zone_geoms, commune.geometry)) / 1e6
            hit = inter > 1e-9
        else:
            inter, hit = np.empty(0), np.empty(0, dtype=bool)
        fig = _unit_figures(v, float(inter[hit].sum()), int(hit.sum()), int(bool(commune["centre_reached"])), 1, goal_share)
        fig = {"commune_id": commune["commune_id"], "name": commune["name"],
               "centre_dist_to_fibre_m": commune["centre_dist_to_fibre_m"], **fig}
        rows.append(fig)
    per_commune = pd.DataFrame(rows)
    district = _unit_figures(villages, float(zones["area_km2"].sum()) if len(zones) else 0.0, len(zones),
                             int(communes["centre_reached"].sum()), len(communes), goal_share)
    district = pd.DataFrame([{"name": study_name, "level": level, **district}])
    return per_commune, district


DETAIL_TEMPLATES = {
    "en": {
        "villages_4g": "{meets}/{n} villages meet, {fails} fail, {insufficient} insufficient evidence",
        "no_dead_zones": "{area:.2f} km², {households:.0f} households",
        "fibre_households": "{passed:.0f}/{households_total} households passed",
        "fibre_communes": "{reached}/{communes} commune centres reached",
        "measured": "share of village area with enough samples",
        "status": {STATUS_MET: "met", STATUS_NOT_MET: "not met", STATUS_INSUFFICIENT: "insufficient evidence"},
    },
    "vi": {
        "villages_4g": "{meets}/{n} thôn đạt, {fails} chưa đạt, {insufficient} chưa đủ số liệu",
        "no_dead_zones": "{area:.2f} km², {households:.0f} hộ",
        "fibre_households": "{passed:.0f}/{households_total} hộ có cáp quang đi qua",
        "fibre_communes": "{reached}/{communes} trụ sở xã có cáp quang",
        "measured": "tỷ lệ diện tích thôn có đủ mẫu đo",
        "status": {STATUS_MET: "đạt", STATUS_NOT_MET: "chưa đạt", STATUS_INSUFFICIENT: "chưa đủ số liệu"},
    },
}


def scorecard_long(district: pd.DataFrame, *, goal_share: float, lang: str = "en") -> pd.DataFrame:
    """The district scorecard as one row per target: ``target, label, value, detail, goal, status``.

    ``status`` keeps the English key (met / not met / insufficient evidence) so files
    are comparable across languages; ``status_text`` is in ``lang``.
    """
    d = district.iloc[0]
    labels, text = TARGET_LABELS[lang], DETAIL_TEMPLATES[lang]
    figures = dict(meets=d["villages_meeting_4g"], n=d["n_villages"], fails=d["villages_failing_4g"],
                   insufficient=d["villages_insufficient_4g"], area=d["dead_zone_area_km2"],
                   households=d["households_in_dead_zones"], passed=d["households_passed"],
                   households_total=d["households"], reached=d["communes_reached"], communes=d["communes"])
    rows = [
        ("villages_4g", f"{d['share_villages_4g']:.1%}", "100%", d["status_villages_4g"]),
        ("no_dead_zones", f"{d['dead_zones']}", "0", d["status_no_dead_zones"]),
        ("fibre_households", f"{d['fibre_share']:.1%}", f"> {goal_share:.0%}", d["status_fibre_households"]),
        ("fibre_communes", f"{d['share_communes_reached']:.1%}", "100%", d["status_fibre_communes"]),
        ("measured", f"{d['share_area_measured']:.1%}", "", ""),
    ]
    return pd.DataFrame(
        [{"target": t, "label": labels[t], "value": v, "detail": text[t].format(**figures), "goal": g, "status": s,
          "status_text": text["status"].get(s, "")} for t, v, g, s in rows]
    )


def format_scorecard(long: pd.DataFrame, title: str) -> str:
    """A plain-text table of the district scorecard for the terminal."""
    w_label = max(len(s) for s in long["label"])
    w_value = max(len(s) for s in long["value"])
    lines = [title, "-" * len(title)]
    for _, r in long.iterrows():
        status = f"[{r['status_text']}]" if r["status_text"] else ""
        goal = r["goal"]
        lines.append(f"{r['label']:<{w_label}}  {r['value']:>{w_value}}  {goal:<10} {status:<24} {r['detail']}")
    return "\n".join(lines)
