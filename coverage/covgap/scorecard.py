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
        "fibre_households": "fibre passes > {goal} of households",
        "fibre_communes": "fibre reaches every commune",
    },
    "vi": {
        "villages_4g": "100% thôn có sóng 4G",
        "no_dead_zones": "không còn vùng lõm sóng",
        "fibre_households": "cáp quang đến > {goal} hộ gia đình",
        "fibre_communes": "cáp quang đến 100% xã",
    },
}

STATUS_MET, STATUS_NOT_MET, STATUS_INSUFFICIENT = "met", "not met", "insufficient evidence"


def _unit_figures(v: pd.DataFrame, zones_area_km2: float, zones_count: int, centres_reached: int,
                  centres_total: int, goal_share: float, min_evidence_share: float) -> dict:
    """The figures of one unit (a commune or the district) from its villages."""
    n = len(v)
    meets = int((v["verdict_4g"] == Verdict.MEETS.value).sum())
    fails = int((v["verdict_4g"] == Verdict.FAILS.value).sum())
    insufficient = n - meets - fails
    hh = float(v["households"].sum())
    passed = float(v["households_passed"].sum())
    area = float(v["area_km2"].sum())
    measured = float((v["share_measured"] * v["area_km2"]).sum())
    evidence_hh = float((v["evidence_share"].fillna(0.0) * v["households"]).sum())
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
        "households_measured": round(evidence_hh, 1),
        "evidence_share": evidence_hh / hh if hh else 0.0,
    }
    if "fibre_subscribed" in v:
        fig["fibre_subscribed"] = int(pd.to_numeric(v["fibre_subscribed"], errors="coerce").fillna(0).sum())
        fig["subscribed_share"] = fig["fibre_subscribed"] / hh if hh else np.nan
    fig["status_villages_4g"] = (STATUS_MET if meets == n and n else STATUS_NOT_MET if fails else STATUS_INSUFFICIENT)
    fig["status_no_dead_zones"] = (STATUS_NOT_MET if zones_count else STATUS_MET
                                   if fig["evidence_share"] >= min_evidence_share - 1e-12 else STATUS_INSUFFICIENT)
    fig["status_fibre_households"] = STATUS_MET if hh and passed / hh > goal_share else STATUS_NOT_MET
    fig["status_fibre_communes"] = STATUS_MET if centres_total and centres_reached == centres_total else STATUS_NOT_MET
    return fig


def compute_scorecards(villages: pd.DataFrame, zones: gpd.GeoDataFrame, communes: gpd.GeoDataFrame, *, level: str,
                       goal_share: float, min_evidence_share: float,
                       study_name: str) -> tuple[pd.DataFrame, pd.DataFrame]:
    """The commune scorecard (one row per commune of ``level``) and the district one (one row).

    ``villages`` carries the indicators of :mod:`covgap.villages` and
    :mod:`covgap.fibre`; ``communes`` carries ``centre_reached``. A dead zone
    that spans two communes counts in both, with its area split between them; the
    district counts it once.

    Notes
    -----
    Target status: *4G in every village* is met when every village meets it, not
    met when any fails, and insufficient evidence when none fails but some lack
    measurements. *No dead zones* (DESIGN.md §3.7): not met when a dead zone is found;
    met when none is found and ``evidence_share`` (households in measured cells /
    households) ≥ ``min_evidence_share``; else insufficient evidence. *Fibre households*:
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
        fig = _unit_figures(v, float(inter[hit].sum()), int(hit.sum()), int(bool(commune["centre_reached"])), 1, goal_share,
                           min_evidence_share)
        fig = {"commune_id": commune["commune_id"], "name": commune["name"],
               "centre_dist_to_fibre_m": commune["centre_dist_to_fibre_m"], **fig}
        rows.append(fig)
    per_commune = pd.DataFrame(rows)
    district = _unit_figures(villages, float(zones["area_km2"].sum()) if len(zones) else 0.0, len(zones),
                             int(communes["centre_reached"].sum()), len(communes), goal_share, min_evidence_share)
    district = pd.DataFrame([{"name": study_name, "level": level, **district}])
    return per_commune, district


DETAIL_TEMPLATES = {
    "en": {
        "villages_4g": "{meets}/{n} villages meet, {fails} fail, {insufficient} insufficient evidence",
        "no_dead_zones": "{area:.2f} km², {households:.0f} households in dead zones",
        "fibre_households": "{passed:.0f}/{households_total} households passed",
        "fibre_communes": "{reached}/{communes} commune centres reached",
        "evidence_measured": "{evidence:.0%} of households in measured cells",
        "evidence_fibre": "from the fibre routes (no measurement needed)",
        "status": {STATUS_MET: "met", STATUS_NOT_MET: "not met", STATUS_INSUFFICIENT: "insufficient evidence"},
        "header": ("target", "now", "goal", "status", "evidence", "detail"),
    },
    "vi": {
        "villages_4g": "{meets}/{n} thôn đạt, {fails} chưa đạt, {insufficient} chưa đủ số liệu",
        "no_dead_zones": "{area:.2f} km², {households:.0f} hộ trong vùng lõm",
        "fibre_households": "{passed:.0f}/{households_total} hộ có cáp quang đi qua",
        "fibre_communes": "{reached}/{communes} trụ sở xã có cáp quang",
        "evidence_measured": "{evidence:.0%} số hộ ở ô đã đo đủ",
        "evidence_fibre": "theo tuyến cáp quang (không cần đo)",
        "status": {STATUS_MET: "đạt", STATUS_NOT_MET: "chưa đạt", STATUS_INSUFFICIENT: "chưa đủ số liệu"},
        "header": ("mục tiêu", "hiện tại", "mục tiêu", "đánh giá", "bằng chứng", "chi tiết"),
    },
}


def scorecard_long(unit: pd.DataFrame, *, goal_share: float, lang: str = "en") -> pd.DataFrame:
    """A unit's scorecard (district or one commune) as one row per target.

    Columns ``target, label, value, goal, status, status_text, evidence_share, evidence, detail``.
    ``status`` keeps the English key (met / not met / insufficient evidence) so files are
    comparable across languages; ``status_text``, ``label``, ``evidence`` and ``detail`` are in
    ``lang``. ``evidence_share`` is the share of households in measured cells for the
    two signal targets and empty for the fibre targets, which need no measurement.
    """
    d = unit.iloc[0]
    labels, text = TARGET_LABELS[lang], DETAIL_TEMPLATES[lang]
    goal = f"{goal_share:.0%}"
    figures = dict(meets=d["villages_meeting_4g"], n=d["n_villages"], fails=d["villages_failing_4g"],
                   insufficient=d["villages_insufficient_4g"], area=d["dead_zone_area_km2"],
                   households=d["households_in_dead_zones"], passed=d["households_passed"],
                   households_total=d["households"], reached=d["communes_reached"], communes=d["communes"],
                   evidence=d["evidence_share"])
    rows = [
        ("villages_4g", _pct(d["share_villages_4g"]), "100%", d["status_villages_4g"], d["evidence_share"]),
        ("no_dead_zones", f"{d['dead_zones']}", "0", d["status_no_dead_zones"], d["evidence_share"]),
        ("fibre_households", _pct(d["fibre_share"]), f"> {goal}", d["status_fibre_households"], np.nan),
        ("fibre_communes", _pct(d["share_communes_reached"]), "100%", d["status_fibre_communes"], np.nan),
    ]
    return pd.DataFrame(
        [{"target": t, "label": labels[t].format(goal=goal), "value": v, "goal": g, "status": s,
          "status_text": text["status"].get(s, ""), "evidence_share": e,
          "evidence": text["evidence_measured"].format(**figures) if np.isfinite(e) else text["evidence_fibre"],
          "detail": text[t].format(**figures)} for t, v, g, s, e in rows]
    )


def _pct(x: float) -> str:
    return f"{x:.1%}" if np.isfinite(x) else "–"


def format_scorecard(long: pd.DataFrame, title: str, *, lang: str = "en") -> str:
    """A plain-text table of a scorecard for the terminal: each line with its status and evidence."""
    w_label = max(len(s) for s in long["label"])
    w_value = max(len(s) for s in long["value"])
    lines = [title, "-" * len(title)]
    for _, r in long.iterrows():
        status = f"[{r['status_text']}]" if r["status_text"] else ""
        lines.append(f"{r['label']:<{w_label}}  {r['value']:>{w_value}}  {r['goal']:<6} {status:<24} "
                     f"{r['detail']}; {r['evidence']}")
    return "\n".join(lines)
