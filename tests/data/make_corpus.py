"""Writes the small measurement files of tests/data/formats and tests/data/bad.

The points lie in the cells of the hand-worked district of tests/conftest.py, so
the files can be taken in by a refresh of ``hand_project``. The files are
committed; run this again only to change them:

    .venv/bin/python tests/data/make_corpus.py

What each file must give is in tests/test_refresh.py (``FORMAT_CASES``,
``REFUSED_CASES``, ``ROW_REASONS``) and tests/data/README.md.
"""

from __future__ import annotations

import bz2
import gzip
import sys
import zipfile
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))

from conftest import cell_centre_lonlat  # noqa: E402


def ll(row: int, col: int) -> tuple[float, float]:
    lon, lat = cell_centre_lonlat(row, col)
    return lat, lon


def write(path: Path, text: str, encoding: str = "utf-8", newline: str = "\n") -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(text.replace("\n", newline).encode(encoding))


def formats(folder: Path) -> None:
    (a, b), (c, d), (e, f) = ll(0, 0), ll(0, 1), ll(1, 0)
    write(folder / "generic_comma.csv", f"lat,lon,rsrp\n{a},{b},-95\n{c},{d},-101\n{e},{f},-88\n")
    dc = lambda v: str(v).replace(".", ",")  # noqa: E731
    write(folder / "generic_semicolon_decimal_comma.csv",
          f"lat;lon;rsrp_dbm;operator\n{dc(a)};{dc(b)};-95,5;Viettel\n{dc(c)};{dc(d)};-101,0;Vinaphone\n"
          f"{dc(e)};{dc(f)};-88,4;45201\n")
    write(folder / "generic_tab.tsv",
          f"latitude\tlongitude\tdbm\ttech\n{a}\t{b}\t-95\tLTE\n{c}\t{d}\t-80\tUMTS\n{e}\t{f}\t-70\tGSM\n")
    gnt_header = ("Timestamp\tLongitude\tLatitude\tSpeed\tOperatorname\tOperator\tCGI\tCellname\tNode\tCellID\tLAC\t"
                  "NetworkTech\tNetworkMode\tLevel\tQual\tSNR\tCQI\tLTERSSI\tARFCN\tDL_bitrate\tUL_bitrate\n")
    write(folder / "gnettrack.txt", gnt_header
          + f"2026.03.14_09.21.05\t{b}\t{a}\t12\tViettel\t45204\t-\t-\t-\t1234\t-\tLTE\tLTE\t-98\t-10\t5\t-\t-67\t1850\t2500\t300\n"
          + f"2026.03.14_09.21.06\t{d}\t{c}\t12\tViettel\t45204\t-\t-\t-\t1234\t-\tHSPA+\tHSPA+\t-85\t-8\t-\t-\t-\t10562\t900\t100\n"
          + f"2026.03.14_09.21.07\t{f}\t{e}\t12\tViettel\t45204\t-\t-\t-\t1234\t-\tLTE\tLTE\t-\t-\t-\t-\t-\t1850\t-\t-\n")
    write(folder / "cradlepoint.csv",
          "Time,Latitude,Longitude,Carrier,Service Type,Band,RSRP,RSRQ,SINR,RSSI,Download,Upload,Latency\n"
          f"2026-03-14 09:21:05,{a},{b},Viettel,LTE,B3,-97,-11,8,-65,21.5,4.1,38\n"
          f"2026-03-14 09:22:05,{c},{d},MobiFone,LTE,B1,-108,-14,2,-75,3.2,0.8,61\n")
    write(folder / "utf8_bom.csv",
          f"lat,lon,rsrp,operator,ghi_chú\n{a},{b},-95,Viettel,đường đất\n{c},{d},-99,MobiFone,trường học\n",
          encoding="utf-8-sig")
    write(folder / "utf16_excel_unicode_text.txt",
          f"lat\tlon\trsrp\toperator\tghi_chú\n{a}\t{b}\t-95\tViettel\tchợ\n{c}\t{d}\t-99\tVinaphone\tđình làng\n",
          encoding="utf-16", newline="\r\n")
    write(folder / "mapped_vietnamese_columns.csv",
          f"Vĩ độ;Kinh độ;Cường độ (dBm);Nhà mạng\n{dc(a)};{dc(b)};-95;Viettel\n{dc(c)};{dc(d)};-99;MobiFone\n")


def bad(folder: Path) -> None:
    (a, b) = ll(0, 0)
    write(folder / "empty.csv", "")
    write(folder / "blank_lines_only.csv", "\n\n   \n")
    write(folder / "header_only.csv", "lat,lon,rsrp\n")
    write(folder / "no_signal_column.csv", f"lat,lon,operator\n{a},{b},Viettel\n")
    write(folder / "no_coordinates.csv", "easting,northing,rsrp\n250050,1660250,-95\n")
    write(folder / "opencellid.csv",
          "radio,mcc,net,area,cell,unit,lon,lat,range,samples,changeable,created,updated,averageSignal\n"
          f"LTE,452,4,10301,2345678,0,{b},{a},1000,12,1,1600000000,1700000000,0\n")
    write(folder / "windows1252.csv", f"lat,lon,rsrp,ghi chú\n{a},{b},-95,chú\n", encoding="cp1252")
    write(folder / "all_outside.csv", "lat,lon,rsrp\n21.0285,105.8542,-90\n10.7769,106.7009,-95\n")
    buf = folder / "workbook.xlsx"
    with zipfile.ZipFile(buf, "w") as z:
        z.writestr("[Content_Types].xml", "<Types/>")
    # One row per rejection reason, a good row first, and a blank line (line numbers stay exact).
    (g, h), (i, j) = ll(1, 1), ll(0, 4)
    write(folder / "rows_each_bad.csv", "\n".join([
        "timestamp,lat,lon,operator,technology,rsrp",
        f"2026-03-01T08:00:00+07:00,{g},{h},Viettel,LTE,-95",           # line 2: used
        "",                                                               # line 3: blank, not a row
        f"2026-03-01T08:00:00+07:00,{g},{h},Viettel,LTE,-95",           # line 4: duplicate_row
        f"2026-03-01T08:01:00+07:00,abc,{h},Viettel,LTE,-95",           # line 5: unparseable_coordinate
        f"2026-03-01T08:02:00+07:00,{h},{g},Viettel,LTE,-95",           # line 6: swapped_lat_lon
        "2026-03-01T08:03:00+07:00,21.0285,105.8542,Viettel,LTE,-95",   # line 7: outside_study_area
        f"2026-03-01T08:04:00+07:00,{i},{j},Viettel,LTE,-20",           # line 8: dbm_out_of_range
        f"2026-03-01T08:05:00+07:00,{i},{j},Viettel,LTE,-",             # line 9: missing_signal
        f"2026-03-01T08:06:00+07:00,{i},{j},Viettel,WiMAX,-95",         # line 10: unknown_technology
        f"hôm qua,{i},{j},Viettel,LTE,-95",                              # line 11: unparseable_timestamp
        f"2099-01-01T00:00:00+07:00,{i},{j},Viettel,LTE,-95",           # line 12: future_timestamp
        f'2026-03-01T08:07:00+07:00,"{i},{j},Viettel,LTE,-95',          # line 13: unbalanced_quote
        f"2026-03-01T08:08:00+07:00,{i},{j},Viettel,LTE",               # line 14: wrong_field_count
    ]) + "\n")


def crash(folder: Path) -> None:
    """Minimal cases of files that once ended in an internal error (tests/data/crash/README.md)."""
    (a, b), (c, d), (e, f) = ll(0, 0), ll(0, 1), ll(1, 0)
    good = f"{a},{b},-95\n{c},{d},-99\n"
    write(folder / "mixed_time_zones.csv",
          f"timestamp,lat,lon,rsrp\n2026-03-14T10:00:00,{a},{b},-95\n2026-03-14T10:00:00+07,{c},{d},-99\n"
          f"2026-03-14 10:05:00+0700,{e},{f},-90\n")
    write(folder / "duplicate_column.csv", f"lat,lon,rsrp,lat\n{a},{b},-95,{a}\n")
    write(folder / "duplicate_column_after_trimming.csv", f"rsrp,lat,lon,rsrp \n-95,{a},{b},-96\n")
    (folder / "not_gzip.csv.gz").write_bytes(f"lat,lon,rsrp\n{good}".encode())
    whole = gzip.compress(f"lat,lon,rsrp\n{good * 200}".encode(), mtime=0)
    (folder / "truncated.csv.gz").write_bytes(whole[: len(whole) // 2])
    (folder / "plain_text.csv.bz2").write_bytes(f"lat,lon,rsrp\n{good}".encode())
    (folder / "real.csv.bz2").write_bytes(bz2.compress(f"lat,lon,rsrp\n{good}".encode()))
    (folder / "bom_only.csv").write_bytes(b"\xef\xbb\xbf")
    (folder / "nbsp_only.csv").write_bytes(b"\xc2\xa0\n")
    (folder / "control_character_only.csv").write_bytes(b"\x01\n")
    write(folder / "leading_blank_lines.csv", f"\n  \nlat,lon,rsrp\n{good}")
    write(folder / "quoted_header_with_separator.csv", f'"x,lat",lon,rsrp\n"{a}",{b},-95\n')
    write(folder / "u2028_in_header.csv", f"lat,lon,rsrp,ghi\u2028chú\n{a},{b},-95,x\u2028y\n{c},{d},-99,z\n")
    write(folder / "trailing_separator.csv", f"lat,lon,rsrp\n{a},{b},-95,\n{c},{d},-99\n")
    write(folder / "unbalanced_quote.csv",
          f'lat,lon,rsrp,note\n{a},{b},-95,ok\n{c},{d},-99,"never closed\n{e},{f},-90,ok\n'
          f'{a},{b},-91,"a, quoted note"\n{c},{d},-92,ok\n')
    write(folder / "values_only_in_unread_columns.csv", f"lat,lon,rsrp,note\n{good.splitlines()[0]},x\n,,,hello\n")
    (folder / "invalid_byte_at_end.csv").write_bytes(f"lat,lon,rsrp,note\n{a},{b},-95,ch".encode() + b"\xfa\n")
    write(folder / "wrong_field_counts.csv", f"lat,lon,rsrp\n{a},{b},-95\n{c},{d}\n{e},{f},-90,1,2\n{a},{b},-91\n")


if __name__ == "__main__":
    formats(HERE / "formats")
    bad(HERE / "bad")
    crash(HERE / "crash")
    print(f"wrote {HERE / 'formats'}, {HERE / 'bad'} and {HERE / 'crash'}")
