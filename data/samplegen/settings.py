"""Every constant of the sample: seed, paths, the generated district's parameters and their sources."""

from __future__ import annotations

import math
from datetime import timedelta, timezone
from pathlib import Path

from pyproj import Transformer

SEED = 20260314  # the one seed; np.random.default_rng(SEED) is created once in main()


HERE = Path(__file__).resolve().parents[1]  # data/


SOURCE = HERE / "source"  # real inputs, copied unchanged from the shared data folder


OUT = HERE / "sample"


MEAS = OUT / "measurements"


TRUTH = OUT / "truth"


WGS84 = "EPSG:4326"


UTM = "EPSG:32649"  # working CRS (UTM 49N); every distance and area is measured in it


TO_UTM = Transformer.from_crs(WGS84, UTM, always_xy=True)


TO_LL = Transformer.from_crs(UTM, WGS84, always_xy=True)


TZ = timezone(timedelta(hours=7))  # Asia/Ho_Chi_Minh, no DST


GRID_RES = 50.0  # m, truth grid (Ofcom's coverage checker also uses 50 m)


SIM_BUFFER = 2500.0  # m around the district bounds: the simulation grid (covers the road north)


TRUTH_BUFFER = 100.0  # m: truth raster cells kept around the district outline


# WorldPop Global 1 km, UN-adjusted, 2020: people per pixel of 30 arc-seconds; at 15.09°N a pixel
# is 0.8958 km (E-W) x 0.9221 km (N-S) = 0.826 km².
WORLDPOP_PIXEL_KM2 = 0.8958 * 0.9221


# Former communes (13 after the two pre-2025 mergers). Seeds are approximate locations that keep
# the real relative geography: towns La Hà and Sông Vệ on National Road 1 (QL1), the plain in the
# east and centre, the hill communes in the west (Trà Giang). Areas (km²) are targets for the
# generated split, rescaled to each 2025 commune's real area. "hub" = where the People's Committee
# of a 2025 commune sits: its real centre is used as this former commune's centre too.
FORMER_COMMUNES = [
    # name, kind, 2025 commune, seed (lon, lat), target km², terrain, hub of 2025 commune
    ("Thị trấn La Hà", "thị trấn", "Tư Nghĩa", (108.8437, 15.0853), 4.5, "town", True),
    ("Thị trấn Sông Vệ", "thị trấn", "Vệ Giang", (108.8470, 15.0480), 8.0, "town", True),
    ("Nghĩa Điền", "xã", "Nghĩa Giang", (108.7200, 15.1022), 17.5, "plain", False),
    ("Nghĩa Kỳ", "xã", "Nghĩa Giang", (108.7595, 15.0981), 17.5, "plain", True),
    ("Nghĩa Hiệp", "xã", "Vệ Giang", (108.8785, 15.0586), 8.5, "plain", False),
    ("Nghĩa Thuận", "xã", "Nghĩa Giang", (108.7452, 15.1364), 13.0, "plain", False),
    ("Nghĩa Thương", "xã", "Tư Nghĩa", (108.8377, 15.0684), 12.0, "plain", False),
    ("Nghĩa Hòa", "xã", "Tư Nghĩa", (108.8736, 15.0891), 12.0, "plain", False),
    ("Nghĩa Phương", "xã", "Vệ Giang", (108.8556, 15.0290), 8.0, "plain", False),
    ("Nghĩa Sơn", "xã", "Trà Giang", (108.6667, 15.0457), 36.0, "hill", False),
    ("Nghĩa Lâm", "xã", "Trà Giang", (108.6800, 15.1023), 28.0, "hill", True),
    ("Nghĩa Thắng", "xã", "Trà Giang", (108.6354, 15.1380), 28.0, "hill", False),
    ("Nghĩa Trung", "xã", "Tư Nghĩa", (108.8062, 15.0805), 13.0, "plain", False),
]


# Units merged before 2025 (blank commune_2025 in the census file), placed by geography.
MERGED_UNITS = {"Nghĩa Thọ": "Nghĩa Sơn", "Nghĩa Mỹ": "Thị trấn Sông Vệ"}


ATOM_AREA_M2 = 50_000.0  # cells of the fine Voronoi used to draw former-commune boundaries


HOUSEHOLDS_PER_VILLAGE = {"town": 180, "plain": 205, "hill": 180}  # sets the number of villages


MIN_VILLAGES = 5


# Plausible Quảng Ngãi village name elements (not a list of the real thôn of Tư Nghĩa).
NAME_FIRST = ["An", "Bình", "Hòa", "Phú", "Phước", "Thạnh", "Tân", "Long", "Mỹ", "Hưng", "Xuân",
              "Vĩnh", "Khánh", "Thuận", "Đại", "Trường", "Năng", "Hội", "Cổ", "Lạc", "Thanh",
              "Kim", "Gia", "Văn", "Hà", "Phổ", "Đề", "Hải", "Điện", "La", "Lương", "Nhơn"]


NAME_SECOND = ["An", "Hòa", "Lộc", "Thọ", "Phú", "Mỹ", "Sơn", "Trung", "Thạnh", "Bình", "Lợi",
               "Hiệp", "Điền", "Đức", "Vinh", "Hưng", "Xuân", "Lâm", "Tây", "Đông", "Nam", "Bắc",
               "Thượng", "Hạ", "Phong", "Quang", "Tiên", "Châu", "Kỳ", "Thuận", "Môn", "Lễ"]


# Roads. QL1 waypoints north and south of the district (the road continues to Quảng Ngãi city).
QL1_NORTH = [(108.8150, 15.1265), (108.8268, 15.1146)]


QL1_SOUTH = [(108.8569, 15.0132), (108.8590, 15.0040)]


DT623_WEST_END = (108.6150, 15.1600)  # provincial road ĐT623 leaves westward toward Sơn Hà


TRUNK_NODE_SPACING = 600.0  # m, where smaller roads may join QL1 and ĐT623


P_VILLAGE_WITHOUT_ROAD = 0.10  # share of leaf villages whose access track is not mapped


LANE_MARGIN_M = 60.0  # village lanes stop this far from the village edge


# Fibre: existing routes follow QL1, the eastern half of ĐT623 and the roads to most commune
# centres; village roads get existing fibre (east first) until about this share of villages has
# more than 80% of its area within DROP_DISTANCE of an existing route.
DROP_DISTANCE = 200.0  # m, covgap's default fibre drop distance


FIBRE_GOAL_AREA_SHARE = 0.80  # the "> 80% of households passed" target


TARGET_VILLAGE_PASS_SHARE = 0.45


CENTRES_WITHOUT_EXISTING_FIBRE = ["Nghĩa Hòa", "Nghĩa Lâm", "Nghĩa Thắng", "Nghĩa Sơn"]


CENTRES_WITH_PLANNED_FIBRE = ["Nghĩa Hòa"]  # by road; Lâm and Thắng by the ĐT623 extension


PLANNED_HILL_VILLAGES = 5


SUBSCRIBE_SHARE = (0.50, 0.75)  # of passed households (district news: about 60% in served areas)


UNPASSED_SUBSCRIBE_SHARE = (0.0, 0.10)  # long drops and other lines where no route passes


# Operators: name, MCC+MNC (ITU E.212, Vietnam MCC 452), number of sites (plausible for a
# ~200 km² district), EIRP per 15 kHz resource element (dBm: a 46 dBm / 20 MHz LTE carrier is
# 15.2 dBm per RE of 1200, plus ~15 dBi antenna gain, minus feeder loss), minimum site spacing
# (m), share of the crowdsourced phone readings (roughly the national subscriber shares).
OPERATORS = [
    ("Viettel", "45204", 18, 30.0, 1500.0, 0.50),
    ("VNPT-VinaPhone", "45202", 14, 29.0, 1700.0, 0.25),
    ("MobiFone", "45201", 12, 29.0, 1900.0, 0.18),
    ("Vietnamobile", "45205", 5, 28.0, 3000.0, 0.07),
]


SITE_PREFIX = {"Viettel": "VTL", "VNPT-VinaPhone": "VNP", "MobiFone": "MBF", "Vietnamobile": "VNM"}


SITE_SHARING = 0.30  # chance that a new site goes on another operator's tower


SITE_MIN_DENSITY = 80.0  # people/km²: no random sites in the empty hills (power, access)


FORCED_SITES = [("Viettel", "Nghĩa Thắng"), ("Viettel", "Nghĩa Lâm"),
                ("VNPT-VinaPhone", "Nghĩa Lâm"), ("MobiFone", "Nghĩa Thắng")]


NR_SITES_VIETTEL = 3  # Viettel's 5G sites (the densest places)


NR_RANGE_M = 700.0


# Propagation: COST-231 Hata (COST Action 231 final report, 1999) with the Okumura-Hata area
# corrections (Hata 1980) at the anchor densities below (people/km², log-interpolated).
F_MHZ = 1800.0  # LTE band 3, the main LTE layer of the Vietnamese operators


HM_M = 1.5  # handset / scanner antenna height


ENV_ANCHORS = ([math.log10(100), math.log10(500), math.log10(5000)], [-26.9, -11.9, 0.0])


TERRAIN_MAX_DB = 30.0


VALLEY_SIGMA_M = 600.0  # smoothness of the terrain loss field


SHADOW_SIGMA_DB = 6.0


SHADOW_KERNEL_SIGMA_M = 75.0  # correlation 1/e at 150 m


FAST_FADING_SIGMA_DB = 4.0


RSRP_MIN, RSRP_MAX = -140, -44  # 3GPP TS 36.133 RSRP reporting range


# 3G (UMTS 2100) on every site, LTE only where a site has been upgraded (SITES_3G_ONLY are not):
# CPICH RSCP over 3.84 MHz is about 24 dB above the RSRP of one 15 kHz resource element at the
# same path loss, less 2.3 dB for the higher band (COST-231: 33.9·log10(2100/1800)).
RSCP_OFFSET_DB = 24.0 - 2.3


RSCP_MIN, RSCP_MAX = -120, -25  # 3GPP TS 25.133 reporting range


SITES_3G_ONLY = [("Viettel", "Nghĩa Lâm"), ("VNPT-VinaPhone", "Nghĩa Lâm")]  # hill towers never upgraded


FALLBACK_BELOW = -115  # measured LTE RSRP below which phones camp on 3G when 3G is better


P_FALLBACK = 0.85


GSM_BELOW_RSCP = -105  # 3G too weak too: the phone may drop to GSM (RxLev ≈ the same level)


NO_SERVICE_BELOW = -125  # LTE and ...


NO_SERVICE_RSCP_BELOW = -108  # ... 3G both this weak: the app may log "no service"


P_NO_SERVICE = 0.3


DEAD_BELOW = -115  # dBm: 4G usable at or above (covgap's dead_dbm)


USABLE_3G = -100  # dBm: covgap's usable_3g_dbm; a cell without usable 4G but with this is "no 4G"


DEAD_ZONE_SIMPLIFY_M = 20.0  # outlines of the truth dead zones: staircase smoothed < half a cell


# Measurement campaigns.
DRIVE_DAYS = [  # file date, regions driven (2025 communes), start time
    ("2026-03-14", ["Tư Nghĩa"], (8, 5)),
    ("2026-06-20", ["Trà Giang"], (7, 40)),
    ("2026-09-12", ["Nghĩa Giang", "Vệ Giang"], (8, 20)),
]


DRIVE_SPACING_M = (8.0, 12.0)  # a scanner logging about once a second at 20–45 km/h


P_SKIP_LEAF_ROAD = 0.45  # dead-end village roads the drive team never enters


P_SKIP_LANE = 0.2  # village lanes the drive team does not enter (too narrow, no time)


# Settlement: houses line the roads and lanes (DESIGN.md §3.7 counts evidence where people live).
# WorldPop's 1 km density is redistributed within the district by distance to the nearest road
# or lane: relative weight 1 within 60 m, 0.1 within 200 m, 0.01 farther (fields, hills).
SETTLED_WITHIN_M = (60.0, 200.0)


SETTLED_WEIGHTS = (1.0, 0.1, 0.01)


SETTLEMENT_RES = 100.0  # m, the shipped settlement raster (covgap's default cell size)


TRANSIT_S = 1200  # s between two areas driven on the same day


SPEED_MS = {"national": 11.0, "provincial": 10.0, "commune": 8.0, "village": 6.5, "lane": 4.0}


N_PHONE_HOMES = 4500  # phones with the app, each logging in the background around its home


READINGS_PER_HOME = 8


N_PHONE_ROWS = N_PHONE_HOMES * READINGS_PER_HOME


# The crowdsourced app was promoted in one 2025 commune only, so the sample has communes with and
# without enough evidence where people live (DESIGN.md §3.7).
PHONE_CAMPAIGN_COMMUNES = ("Vệ Giang",)


PHONE_DATES = ("2026-01-05", "2026-11-27")


N_UNMEASURED_VILLAGES = 9  # villages left without road and phone measurements


GNETTRACK_LOGS = [  # operator, file date, start time, interval s, route
    ("Viettel", "2026-04-18", (14, 10), 3, "east"),
    ("MobiFone", "2026-07-25", (8, 30), 3, "west"),
]


GNT_PREFIX_ROWS = {"Viettel": (4, 3), "MobiFone": (3, 0)}  # rows before GPS fix: '-' / 0


GNT_LOST_SERVICE_ROWS = {"MobiFone": 4}  # no network at the weakest points: tech/level '-'


# G-NetTrack Pro log columns, in the app's order (tab separated, '-' = no value).
GNT_HEADER = ["Timestamp", "Longitude", "Latitude", "Speed", "Operatorname", "Operator", "CGI",
              "Cellname", "Node", "CellID", "LAC", "NetworkTech", "NetworkMode", "Level", "Qual",
              "SNR", "CQI", "LTERSSI", "ARFCN", "DL_bitrate", "UL_bitrate", "Altitude",
              "Accuracy"]
