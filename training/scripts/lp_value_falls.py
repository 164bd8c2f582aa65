#!/usr/bin/env python3
"""How far the liquidity per LP token, sqrt(reserve0 reserve1) / totalSupply, fell between
consecutive snapshots of the DEX pool files, per exchange, over one period. README, "Anomaly
detection" (stop 41: a protocol fee mint is not a drain).

    python3 training/scripts/lp_value_falls.py [--data ../shared/data/defi] [--from 2020-01-01] [--to 2021-01-01]

Prints, for SushiSwap and Uniswap v2, the changes counted (both snapshots in the period and every
field positive), how many were falls, the falls' quantiles and how many passed 0.05%, 0.2%, 0.5%
and 1%. A count on the files, not a detector's score. Standard library only (seconds).
"""
import argparse
import csv
import glob
import gzip
import math
import os


def falls(path, start, end):
    """(changes counted, the falls as log changes) of one pool file within [start, end)."""
    n, out, prev = 0, [], None
    with gzip.open(path, "rt") as f:
        for row in csv.DictReader(f):
            t = row["datetime"]
            if t >= end:
                break
            try:
                r0, r1, ts = (float(row[k]) for k in ("reserve0", "reserve1", "totalSupply"))
            except (KeyError, ValueError):
                prev = None
                continue
            if min(r0, r1, ts) <= 0:
                prev = None
                continue
            v = math.sqrt(r0 * r1) / ts
            if prev is not None and t >= start:
                change = math.log(v / prev)
                n += 1
                if change < 0:
                    out.append(change)
            prev = v
    return n, out


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", default="../shared/data/defi")
    ap.add_argument("--from", dest="start", default="2020-01-01")
    ap.add_argument("--to", dest="end", default="2021-01-01")
    a = ap.parse_args()
    for dex in ("sushiswap-pairs", "uniswap-v2-pairs"):
        n, neg = 0, []
        for path in sorted(glob.glob(os.path.join(a.data, dex, "*.csv.gz"))):
            k, f = falls(path, a.start, a.end)
            n += k
            neg.extend(f)
        neg.sort()
        print(f"{dex} {a.start} .. {a.end}: {n} changes, {len(neg)} falls")
        if neg:
            qs = ", ".join(
                f"{q}: {100 * neg[int(q * (len(neg) - 1))]:.4f}%" for q in (0.0, 0.01, 0.1, 0.5)
            )
            print(f"  fall quantiles (0 = the largest fall) {qs}")
        for bound in (0.0005, 0.002, 0.005, 0.01):
            count = sum(1 for x in neg if x < math.log1p(-bound))
            print(f"  falls beyond {100 * bound:.2f}%: {count}")


if __name__ == "__main__":
    main()
