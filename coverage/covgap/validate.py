"""Checks that core functions make of what they are given, naming the argument (as geopandas does).

The analysis functions take GeoDataFrames in the working CRS; a caller passing a plain
DataFrame, a layer in degrees or one missing a column gets a message that says which
argument, what it got and what to do, instead of a wrong figure or a KeyError deep inside.
"""

from __future__ import annotations

from collections.abc import Iterable

import geopandas as gpd
import pandas as pd
from pyproj import CRS


def check_geodataframe(value: object, name: str, *, crs: CRS | None = None, columns: Iterable[str] = ()) -> None:
    """Raise ``TypeError``/``ValueError`` unless ``value`` is a GeoDataFrame in ``crs`` with ``columns``.

    Parameters
    ----------
    value
        What the caller passed.
    name
        The argument's name, as the caller wrote it (``villages``).
    crs
        The working CRS the frame must be in (None: any projected CRS).
    columns
        Columns the function reads.
    """
    if not isinstance(value, gpd.GeoDataFrame):
        raise TypeError(f"'{name}' must be a GeoDataFrame, got {type(value).__name__}")
    if value.crs is None:
        raise ValueError(f"'{name}' has no CRS; set it with set_crs() and move it to the working CRS with to_crs()")
    if crs is not None and not CRS.from_user_input(value.crs).equals(crs):
        raise ValueError(f"'{name}' is in {value.crs.to_string()}, not the working CRS {CRS.from_user_input(crs).to_string()}; "
                         "move it with to_crs() first")
    if crs is None and not CRS.from_user_input(value.crs).is_projected:
        raise ValueError(f"'{name}' is in {value.crs.to_string()} (degrees); areas and distances need a projected CRS: "
                         "move it with to_crs() first")
    check_columns(value, name, columns)


def check_columns(value: pd.DataFrame, name: str, columns: Iterable[str]) -> None:
    """Raise ``ValueError`` naming the columns of ``columns`` that ``value`` lacks."""
    missing = [c for c in columns if c not in value.columns]
    if missing:
        raise ValueError(f"'{name}' lacks the column(s) {', '.join(missing)}; it has {', '.join(map(str, value.columns))}")
