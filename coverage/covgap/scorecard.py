"""Commune and district scorecards against the four targets of DESIGN.md §1."""

from __future__ import annotations

from typing import Any

import geopandas as gpd
import numpy as np
import pandas as pd
import shapely

from covgap.i18n import STRINGS
from covgap.villages import Verdict

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
    fig: dict[str, Any] = {
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
    figures = _unit_figures(villages, float(zones["area_km2"].sum()) if len(zones) else 0.0, len(zones),
                            int(communes["centre_reached"].sum()), len(communes), goal_share, min_evidence_share)
    district = pd.DataFrame([{"name": study_name, "level": level, **figures}])
    return per_commune, district


TARGETS = ("villages_4g", "no_dead_zones", "fibre_households", "fibre_communes")


def scorecard_long(unit: pd.DataFrame, *, goal_share: float, lang: str = "en") -> pd.DataFrame:
    """A unit's scorecard (district or one commune) as one row per target.

    Columns ``target, label, value, goal, status, status_text, evidence_share, evidence, detail``.
    ``status`` keeps the English key (met / not met / insufficient evidence) so files are
    comparable across languages; ``status_text``, ``label``, ``evidence`` and ``detail`` are in
    ``lang``, from the one catalogue the maps use (:data:`covgap.i18n.STRINGS`).
    ``evidence_share`` is the share of households in measured cells for the two signal
    targets and empty for the fibre targets, which need no measurement.
    """
    d = unit.iloc[0]
    text = STRINGS[lang]
    goal = f"{goal_share:.0%}"
    figures = dict(meets=d["villages_meeting_4g"], n=d["n_villages"], fails=d["villages_failing_4g"],
                   insufficient=d["villages_insufficient_4g"], area=f"{d['dead_zone_area_km2']:.2f}",
                   households=f"{d['households_in_dead_zones']:.0f}", passed=f"{d['households_passed']:.0f}",
                   reached=d["communes_reached"], total=d["communes"], share=f"{d['evidence_share']:.0%}")
    households_total = dict(figures, households=d["households"])  # the fibre line counts every household
    rows = [
        ("villages_4g", _pct(d["share_villages_4g"]), "100%", d["status_villages_4g"], d["evidence_share"], figures),
        ("no_dead_zones", f"{d['dead_zones']}", "0", d["status_no_dead_zones"], d["evidence_share"], figures),
        ("fibre_households", _pct(d["fibre_share"]), f"> {goal}", d["status_fibre_households"], np.nan, households_total),
        ("fibre_communes", _pct(d["share_communes_reached"]), "100%", d["status_fibre_communes"], np.nan, figures),
    ]
    return pd.DataFrame(
        [{"target": t, "label": text[f"target_{t}"].format(goal=goal), "value": v, "goal": g, "status": s,
          "status_text": text.get(f"status_{s}", ""), "evidence_share": e,
          "evidence": text["detail_evidence"].format(**f) if np.isfinite(e) else text["detail_evidence_fibre"],
          "detail": text[f"detail_{t}"].format(**f)} for t, v, g, s, e, f in rows]
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
