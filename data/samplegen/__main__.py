"""Build every layer and write data/sample/ (``python data/generate_sample.py`` runs this)."""

from __future__ import annotations

import shutil
import sys

import numpy as np
import rasterio

from samplegen.admin import load_communes_2025, load_households, make_villages, split_communes
from samplegen.fibre import make_fibre, village_pass
from samplegen.geo import Grid, settlement_density, worldpop_density, xy_to_lonlat
from samplegen.radio import place_sites, true_class, true_fields
from samplegen.roads import make_roads
from samplegen.settings import (
    GNETTRACK_LOGS,
    GRID_RES,
    MEAS,
    OUT,
    SEED,
    SIM_BUFFER,
    SITE_PREFIX,
    SOURCE,
    SUBSCRIBE_SHARE,
    TRUTH,
    UNPASSED_SUBSCRIBE_SHARE,
    UTM,
)
from samplegen.surveys import choose_unmeasured, drive_tests, gnettrack_log, gnettrack_route, phone_points, skipped_lanes, skipped_leaf_roads
from samplegen.writers import measured_villages, summary, write_geojson, write_lines, write_truth_raster, xy_from_gnt, zone_polygons


def main():
    """Build every layer, write data/sample/, print the summary figures."""
    rng = np.random.default_rng(SEED)
    sys.setrecursionlimit(20000)  # depth-first drive walks
    for d in (OUT, MEAS, TRUTH):
        d.mkdir(parents=True, exist_ok=True)
    communes25 = load_communes_2025()
    district = communes25.union_all()
    households = load_households()
    grid = Grid(district.bounds, GRID_RES, SIM_BUFFER)
    density = worldpop_density(grid)

    communes19 = split_communes(communes25, households, density, grid, rng)
    villages, vgrid = make_villages(communes19, density, grid, rng)
    graph, roads = make_roads(communes19, villages, district, rng)
    fibre = make_fibre(graph, roads, communes19, villages, rng)
    reach = village_pass(villages, list(fibre.loc[fibre.status == "existing"].geometry))
    sub = np.array([rng.uniform(*SUBSCRIBE_SHARE) for _ in range(len(villages))])
    low = np.array([rng.uniform(*UNPASSED_SUBSCRIBE_SHARE) for _ in range(len(villages))])
    passed = villages.households.values * reach
    villages["fibre_subscribed"] = np.minimum(
        np.rint(passed * sub + (villages.households.values - passed) * low).astype(int),
        villages.households.values)

    sites = place_sites(district, communes19, density, grid, rng)
    fields, servers, terrain = true_fields(sites, density, grid, rng)

    unmeasured, no_drive = choose_unmeasured(graph, villages, rng)
    settled, settled_transform, settled_fine = settlement_density(grid, graph, density, district)
    skipped = skipped_leaf_roads(graph, rng) | no_drive | skipped_lanes(graph, villages, unmeasured, rng)
    files, drive_xy = drive_tests(graph, villages, grid, fields, sites, skipped, rng)
    gnt_files, gnt_bad, gnt_xy = {}, {}, []
    for op, day, start, interval, which in GNETTRACK_LOGS:
        pieces = gnettrack_route(graph, roads, communes19, district, which, skipped)
        name = f"gnettrack_{SITE_PREFIX[op].lower()}_{day}.txt"
        lines, bad = gnettrack_log(op, day, start, interval, pieces, grid, fields, servers,
                                   sites, district, terrain, rng)
        gnt_files[name], gnt_bad[name] = lines, bad
        gnt_xy.append(np.array([[float(x) for x in xy_from_gnt(line)] for line in lines[1:]
                                if xy_from_gnt(line) is not None]))
    hit = measured_villages(villages, np.vstack(drive_xy + gnt_xy))
    best = np.rint(fields["best"])
    klass = true_class(best, np.rint(fields["best:3g"]))
    in_dead = [int((klass[grid.cell_of(*xy.T)] == 3).sum()) for xy in drive_xy]
    phone_lines, phone_xy = phone_points(villages, vgrid, settled_fine, grid, fields, sites,
                                         unmeasured, rng)
    files["phones_2026.csv.gz"] = phone_lines  # 20,000 rows: shipped compressed
    header = "timestamp,lat,lon,operator,technology,rsrp_dbm"

    # ---- write ----
    write_geojson(communes25[["commune_id", "name", "kind", "centre_lon", "centre_lat",
                              "former_communes", "area_km2", "population_2025", "geometry"]],
                  OUT / "communes_2025.geojson")
    c19 = communes19.copy()
    c19["centre_lon"], c19["centre_lat"] = xy_to_lonlat(c19.centre_x.values, c19.centre_y.values)
    c19["centre_lon"] = c19.centre_lon.round(5)
    c19["centre_lat"] = c19.centre_lat.round(5)
    c19["area_km2"] = (c19.area / 1e6).round(2)
    c19["split_note"] = "approximate: generated split"
    write_geojson(c19[["commune_id", "name", "kind", "commune_2025", "households_2019",
                       "population_2019", "centre_lon", "centre_lat", "area_km2", "split_note",
                       "geometry"]], OUT / "communes_2019.geojson")
    write_geojson(villages[["village_id", "name", "commune", "commune_2025", "households",
                            "population", "fibre_subscribed", "geometry"]],
                  OUT / "villages.geojson")
    write_geojson(roads, OUT / "roads.geojson")
    write_geojson(fibre, OUT / "fibre_routes.geojson")
    shutil.copyfile(SOURCE / "worldpop_2020_1km_tu_nghia.tif", OUT / "population_2020.tif")
    with rasterio.open(OUT / "settlement_density_100m.tif", "w", driver="GTiff", width=settled.shape[1],
                       height=settled.shape[0], count=1, dtype="float32", nodata=-1, crs=UTM,
                       transform=settled_transform, compress="deflate", zlevel=9, predictor=3) as dst:
        dst.write(np.round(settled, 1), 1)
        dst.update_tags(units="people per km²", source="WorldPop 2020 (1 km) redistributed toward the generated "
                        "roads and lanes (data/generate_sample.py SETTLED_WEIGHTS); generated, not observed")
    for name, lines in files.items():
        write_lines(MEAS / name, [header] + lines)
    for name, lines in gnt_files.items():
        write_lines(MEAS / name, lines)
    s = sites.copy()
    s["lon"], s["lat"] = s.lon.round(6), s.lat.round(6)
    s[["operator", "site_id", "lon", "lat", "height_m", "eirp_dbm"]].to_csv(
        TRUTH / "cell_sites.csv", index=False, lineterminator="\n")
    window, transform = write_truth_raster(TRUTH / "true_rsrp_dbm.tif", fields, grid, district)
    write_truth_raster(TRUTH / "true_rscp_dbm.tif", fields, grid, district, suffix=":3g",
                       quantity="true median 3G RSCP")
    dead = zone_polygons(fields, grid, window, transform, district, 3)
    write_geojson(dead, TRUTH / "true_dead_zones.geojson")
    write_geojson(zone_polygons(fields, grid, window, transform, district, 5), TRUTH / "true_no4g_zones.geojson")

    summary(communes25, communes19, villages, fibre, dead, district, files, gnt_files, gnt_bad,
            hit, phone_xy, reach, sites, in_dead)


if __name__ == "__main__":
    main()
