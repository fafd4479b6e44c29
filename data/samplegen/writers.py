"""Writing the sample: GeoJSON, CSV and gzip files, the truth rasters and zones, the summary."""

from __future__ import annotations

import gzip
import math

import geopandas as gpd
import numpy as np
import rasterio
import shapely
from rasterio import features
from rasterio.transform import from_origin
from shapely.geometry import Point

from samplegen.geo import lonlat_to_xy, polygons_only
from samplegen.radio import true_class
from samplegen.settings import (
    DEAD_BELOW,
    DEAD_ZONE_SIMPLIFY_M,
    DROP_DISTANCE,
    FIBRE_GOAL_AREA_SHARE,
    OPERATORS,
    OUT,
    TRUTH,
    TRUTH_BUFFER,
    USABLE_3G,
    UTM,
    WGS84,
)


def write_geojson(gdf, path):
    """Write EPSG:4326 GeoJSON, coordinates snapped to (and printed with) 6 decimals."""
    g = gdf.to_crs(WGS84)
    g = g.set_geometry(shapely.set_precision(g.geometry.values, 1e-6))
    if path.exists():
        path.unlink()
    g.to_file(path, driver="GeoJSON", COORDINATE_PRECISION=6, engine="pyogrio")


def write_lines(path, lines):
    """Write text lines (UTF-8, LF); gzip-compressed, reproducibly (mtime 0), for *.gz."""
    data = ("\n".join(lines) + "\n").encode("utf-8")
    if path.suffix == ".gz":
        with open(path, "wb") as raw, gzip.GzipFile(filename="", mode="wb", fileobj=raw, mtime=0, compresslevel=9) as gz:
            gz.write(data)
    else:
        path.write_bytes(data)


def write_truth_raster(path, fields, grid, district, suffix="", quantity="true median LTE RSRP"):
    """Int16 GeoTIFF of a true field (one band per operator + best; fields NAME + suffix),
    cropped to the district."""
    x0 = math.floor((district.bounds[0] - TRUTH_BUFFER - grid.x0) / grid.res)
    x1 = math.ceil((district.bounds[2] + TRUTH_BUFFER - grid.x0) / grid.res)
    y0 = math.floor((grid.y1 - district.bounds[3] - TRUTH_BUFFER) / grid.res)
    y1 = math.ceil((grid.y1 - district.bounds[1] + TRUTH_BUFFER) / grid.res)
    mask = grid.rasterize([district.buffer(TRUTH_BUFFER)])[y0:y1, x0:x1] > 0
    names = [o[0] for o in OPERATORS] + ["best"]
    transform = from_origin(grid.x0 + x0 * grid.res, grid.y1 - y0 * grid.res, grid.res, grid.res)
    profile = dict(driver="GTiff", width=x1 - x0, height=y1 - y0, count=len(names),
                   dtype="int16", nodata=-32768, crs=UTM, transform=transform,
                   compress="deflate", zlevel=9, predictor=2, tiled=True, blockxsize=256,
                   blockysize=256)
    with rasterio.open(path, "w", **profile) as dst:
        for b, name in enumerate(names, start=1):
            a = np.rint(fields[name + suffix][y0:y1, x0:x1]).astype("int16")
            dst.write(np.where(mask, a, -32768).astype("int16"), b)
            dst.set_band_description(b, name)
        dst.update_tags(units="dBm", quantity=quantity,
                        model="COST-231 Hata + terrain + shadowing (generated); 3G on every site, LTE on upgraded ones")
    return (x0, x1, y0, y1), transform


def zone_polygons(fields, grid, window, transform, district, klass):
    """Polygons whose true best-operator class (true_class of the integer-dBm best LTE and 3G
    fields) is ``klass``: 3 no service (dead zones) or 5 no 4G."""
    x0, x1, y0, y1 = window
    best = true_class(np.rint(fields["best"][y0:y1, x0:x1]), np.rint(fields["best:3g"][y0:y1, x0:x1]))
    inside = features.rasterize([(district, 1)], out_shape=best.shape, transform=transform) > 0
    dead = ((best == klass) & inside).astype("uint8")
    polys = [shapely.geometry.shape(g) for g, v in features.shapes(dead, mask=dead > 0,
                                                                      transform=transform)]
    polys = [p for poly in polys for p in polygons_only(
        poly.intersection(district).simplify(DEAD_ZONE_SIMPLIFY_M, preserve_topology=True))]
    polys.sort(key=lambda p: (-p.area, p.centroid.x))
    prefix = "D" if klass == 3 else "N"
    return gpd.GeoDataFrame({"zone_id": [f"{prefix}{i + 1:03d}" for i in range(len(polys))],
                             "area_km2": [round(p.area / 1e6, 4) for p in polys]},
                            geometry=polys, crs=UTM)


def xy_from_gnt(line):
    """Projected position of a G-NetTrack row, or None before the GPS fix."""
    parts = line.split("\t")
    if parts[1] in ("-", "0"):
        return None
    return lonlat_to_xy(float(parts[1]), float(parts[2]))


def rows_outside(lines, district):
    """Number of generic-CSV rows (timestamp,lat,lon,...) outside the district outline."""
    lat = np.array([float(line.split(",")[1]) for line in lines])
    lon = np.array([float(line.split(",")[2]) for line in lines])
    x, y = lonlat_to_xy(lon, lat)
    return int((~shapely.contains_xy(district, x, y)).sum())


def measured_villages(villages, xy):
    """Boolean per village: at least one measurement point inside."""
    pts = gpd.GeoDataFrame(geometry=gpd.points_from_xy(xy[:, 0], xy[:, 1]), crs=UTM)
    j = gpd.sjoin(pts, villages[["village_id", "geometry"]], predicate="within")
    return villages.village_id.isin(j.village_id).values


def summary(communes25, communes19, villages, fibre, dead, district, files, gnt_files, gnt_bad,
            drive_hit, phone_xy, reach, sites, in_dead):
    """Print the figures quoted in data/README.md."""
    print("== villages per former commune (households: villages / census) ==")
    for _, c in communes19.iterrows():
        v = villages[villages.commune == c["name"]]
        print(f"  {c.commune_id} {c['name']:<18} {c.commune_2025:<12} {len(v):3d} villages  "
              f"{v.households.sum():5d} / {c.households_2019:5d}  area {c.geometry.area / 1e6:5.1f}"
              f" km²")
    print(f"  total {len(villages)} villages, households {villages.households.sum()} "
          f"(census 37892), population {villages.population.sum()}")
    for _, c in communes25.iterrows():
        n = int((villages.commune_2025 == c["name"]).sum())
        print(f"  2025 {c['name']:<12} {n:3d} villages")
    print("== measurement rows per file (and rows without a usable reading) ==")
    total = bad_total = 0
    for name, lines in sorted(files.items()) + sorted(gnt_files.items()):
        if name.endswith((".csv", ".csv.gz")):
            bad = {"no_service": sum(1 for line in lines if line.endswith(",")),
                   "outside_district": rows_outside(lines, district)}
        else:
            bad, lines = gnt_bad[name], lines[1:]
        total += len(lines)
        bad_total += sum(bad.values())
        print(f"  {name:<34} {len(lines):6d}  {bad}")
    print(f"  total rows {total}; flagged rows {bad_total} ({100 * bad_total / total:.2f}%)")
    area = district.area
    dead_area = dead.geometry.area.sum()
    print("== truth ==")
    print(f"  district {area / 1e6:.1f} km², truly no service (best LTE < {DEAD_BELOW} and best 3G < "
          f"{USABLE_3G} dBm) {dead_area / 1e6:.2f} km² = {100 * dead_area / area:.1f}%, {len(dead)} polygons, "
          f"largest {dead.area_km2.max():.2f} km²")
    no4g = gpd.read_file(TRUTH / "true_no4g_zones.geojson")
    print(f"  truly no 4G but usable 3G (best LTE < {DEAD_BELOW}, best 3G >= {USABLE_3G} dBm) "
          f"{no4g.area_km2.sum():.2f} km², {len(no4g)} polygons, largest {no4g.area_km2.max():.2f} km²")
    print(f"  3G-only sites: {', '.join(sites.loc[~sites.lte, 'site_id'])}")
    union = dead.union_all()
    dead_share = np.array([g.intersection(union).area / g.area for g in villages.geometry])
    print(f"  villages with >= 50% of area dead: {(dead_share >= 0.5).sum()}; any dead area: "
          f"{(dead_share > 0).sum()}")
    for i in np.flatnonzero(dead_share >= 0.5):
        v = villages.iloc[i]
        print(f"    {v.village_id} {v['name']} ({v.commune}) {100 * dead_share[i]:.0f}% dead")
    print(f"  drive-test scanner points in truly no-service cells, per day: {in_dead}")
    phone_hit = measured_villages(villages, phone_xy)
    never = villages.loc[~drive_hit & ~phone_hit]
    print(f"== villages never measured: {len(never)} ==")
    for _, v in never.iterrows():
        print(f"  {v.village_id} {v['name']} ({v.commune})")
    ok = reach > FIBRE_GOAL_AREA_SHARE
    print(f"== fibre: villages with > 80% of area within {DROP_DISTANCE:.0f} m of an existing "
          f"route: {ok.sum()} of {len(villages)} ({100 * ok.mean():.0f}%) ==")
    sub = villages.fibre_subscribed.sum()
    in_ok = villages.fibre_subscribed[ok].sum() / villages.households[ok].sum()
    print(f"  fibre_subscribed {sub} households = {100 * sub / villages.households.sum():.0f}% "
          f"of all; {100 * in_ok:.0f}% in passing villages")
    ex = shapely.union_all(list(fibre.loc[fibre.status == "existing"].geometry))
    pl = shapely.union_all(list(fibre.loc[fibre.status == "planned"].geometry))
    print("== commune centres within 200 m of fibre (existing / planned) ==")
    for _, c in communes19.iterrows():
        p = Point(c.centre_x, c.centre_y)
        print(f"  {c['name']:<18} existing {ex.distance(p):7.0f} m  planned {pl.distance(p):7.0f} m"
              f"  {'REACHED' if ex.distance(p) <= DROP_DISTANCE else 'not reached'}")
    for _, c in communes25.iterrows():
        p = Point(*lonlat_to_xy(c.centre_lon, c.centre_lat))
        print(f"  2025 {c['name']:<12} existing {ex.distance(p):7.0f} m  "
              f"{'REACHED' if ex.distance(p) <= DROP_DISTANCE else 'not reached'}")
    print(f"== cell sites: {sites.groupby('operator').size().to_dict()} ==")
    print("== files ==")
    tot = 0
    for p in sorted(OUT.rglob("*")):
        if p.is_file():
            tot += p.stat().st_size
            print(f"  {str(p.relative_to(OUT)):<44} {p.stat().st_size:9d} B")
    print(f"  total {tot / 1e6:.2f} MB")
