#!/usr/bin/env python3
"""How often real hours look like our middle-strength injections, counted on their plain
signature (not by the detector), as a multiple of the anomaly detector's flag budget of one flag
per asset per 30 days (1/720 of asset-hours). README, "Anomaly detection".

    python3 training/scripts/signature_counts.py [--data ../shared/data/binance-spot-1h] 2019 2020 2021

Per asset-hour h of the year (with a week of history before it and 5 hours after it):
- wick10:        the low at least 10% below the body (the spoofed wick at its middle strength);
- wick10_quiet:  that wick on quote volume under 2x the median of the 168 hours before (the
                 injected wick keeps the hour's volume);
- rise20_3h:     close(h+2) / close(h-1) >= 1.2 (the pump's rise);
- pump20_back:   that rise, and close(h+4) / close(h-1) <= 1.05 (undone within 2 h);
- wash8x3h_flat: quote volume of hours h..h+2 each >= 8x the median of the 168 hours before,
                 and |close(h+2) / close(h-1) - 1| < 3% (wash trading at its middle strength).
A crude count: it says how much of the flag budget real hours with the same plain signature
would take, not what any detector scores. Standard library only (about 1 minute per year).
"""
import argparse
import calendar
import csv
import glob
import gzip
import os
import statistics

BUDGET = 1 / 720


def year_bounds(year):
    lo = calendar.timegm((year, 1, 1, 0, 0, 0)) * 1000
    hi = calendar.timegm((year + 1, 1, 1, 0, 0, 0)) * 1000
    return lo, hi


def count(data, year):
    lo, hi = year_bounds(year)
    n = {"wick10": 0, "wick10_quiet": 0, "rise20_3h": 0, "pump20_back": 0, "wash8x3h_flat": 0}
    total = 0
    for path in sorted(glob.glob(os.path.join(data, "*.csv.gz"))):
        with gzip.open(path, "rt") as f:
            rows = [
                (int(r["open_time"]), float(r["open"]), float(r["low"]), float(r["close"]),
                 float(r["quote_volume"]))
                for r in csv.DictReader(f)
            ]
        vols = [r[4] for r in rows]
        for i, (t, o, low, c, _) in enumerate(rows):
            if not lo <= t < hi or i < 168 or i + 5 >= len(rows):
                continue
            total += 1
            med = statistics.median(vols[i - 168:i])
            if 1 - low / min(o, c) >= 0.10:
                n["wick10"] += 1
                if vols[i] < 2 * med:
                    n["wick10_quiet"] += 1
            base = rows[i - 1][3]
            rise = rows[i + 2][3] / base
            if rise >= 1.2:
                n["rise20_3h"] += 1
                if rows[i + 4][3] / base <= 1.05:
                    n["pump20_back"] += 1
            if med > 0 and all(vols[i + k] >= 8 * med for k in range(3)) and abs(rise - 1) < 0.03:
                n["wash8x3h_flat"] += 1
    return total, n


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--data", default="../shared/data/binance-spot-1h")
    ap.add_argument("years", nargs="+", type=int)
    args = ap.parse_args()
    print("| year | asset-hours | " + " | ".join(
        ["wick10", "wick10_quiet", "rise20_3h", "pump20_back", "wash8x3h_flat"]) + " |  (hours, budgets)")
    for y in args.years:
        total, n = count(args.data, y)
        cells = [f"{v} ({v / total / BUDGET:.2f})" for v in n.values()]
        print(f"| {y} | {total} | " + " | ".join(cells) + " |")


if __name__ == "__main__":
    main()
