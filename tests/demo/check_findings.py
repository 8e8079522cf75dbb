#!/usr/bin/env python3
"""An independent reading of the demo's findings (stdlib only).

`rotor report` decides the five findings in C++ (eval/findings.cc) and writes
findings.md. This script decides them again from the merged CSVs alone, with
the rules of eval/findings.h written out here from scratch and the run roles
given on the command line (what launch/demo trained, not what the report
inferred from the recipes), and fails when a verdict differs:

  check_findings.py REPORT_DIR --base base --extensions direct,pi,yarn,abf,eabf \
      --ablation abf-256:abf --eabf eabf

REPORT_DIR holds ppl.csv, attention.csv, passkey.csv, ruler.csv (needle.csv
when present) and findings.md. Exit status 0 when every verdict agrees.
"""
import argparse
import csv
import math
import os
import re
import sys


def rows(report, name):
    path = os.path.join(report, name)
    if not os.path.exists(path):
        return []
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


def ppl_table(report):
    """run -> {length: ppl} (bucket all), and run -> train length."""
    ppl, train = {}, {}
    for r in rows(report, "ppl.csv"):
        if r["bucket"] == "all":
            ppl.setdefault(r["run"], {})[int(r["length"])] = float(r["ppl"])
            train[r["run"]] = int(r["train_length"])
    return ppl, train


def layer_means(report, metric):
    """(run, length) -> the mean over layers of `metric` (heads -1, bucket all)."""
    by = {}
    for r in rows(report, "attention.csv"):
        if r["metric"] == metric and r["head"] == "-1" and r["bucket"] == "all":
            by.setdefault((r["run"], int(r["length"])), []).append(float(r["value"]))
    return {key: sum(v) / len(v) for key, v in by.items()}


def ranks(values):
    order = sorted(range(len(values)), key=lambda i: values[i])
    r = [0.0] * len(values)
    i = 0
    while i < len(order):
        j = i
        while j + 1 < len(order) and values[order[j + 1]] == values[order[i]]:
            j += 1
        for k in range(i, j + 1):
            r[order[k]] = (i + j) / 2 + 1  # average rank of a tie
        i = j + 1
    return r


def spearman(x, y):
    rx, ry = ranks(x), ranks(y)
    mx, my = sum(rx) / len(rx), sum(ry) / len(ry)
    sxy = sum((a - mx) * (b - my) for a, b in zip(rx, ry))
    sxx = sum((a - mx) ** 2 for a in rx)
    syy = sum((b - my) ** 2 for b in ry)
    if len(x) < 3 or sxx == 0 or syy == 0:
        return float("nan")
    return sxy / math.sqrt(sxx * syy)


def scores(report, run):
    """The retrieval cells of a run: key -> score (passkey/needle pass rate per
    (length, depth), RULER per (task, length))."""
    out = {}
    for name in ("passkey.csv", "needle.csv"):
        for r in rows(report, name):
            if r["run"] == run:
                out[(name, r["length"], r["depth"])] = float(r["pass_rate"])
    for r in rows(report, "ruler.csv"):
        if r["run"] == run:
            out[("ruler", r["task"], r["length"])] = float(r["pass_rate"])
    return out


def decide(report, base, extensions, ablations, eabf):
    ppl, train = ppl_table(report)
    verdicts = {}
    # 1. The base breaks past its length; every extension holds to its own.
    lb = train[base]
    past = [p for n, p in ppl[base].items() if n > lb]
    breaks = bool(past) and max(past) >= 1.1 * ppl[base][lb]
    holds = all(ppl[r][train[r]] <= 1.05 * ppl[r][lb] and ppl[r][train[r]] < ppl[base][train[r]] for r in extensions)
    verdicts[1] = breaks and holds
    # 2. The largest JS divergence from the base has the worst ppl at the
    #    longest length every extension run was evaluated at.
    js_all = layer_means(report, "js_divergence")
    js = {r: js_all[(r, max(n for (run, n) in js_all if run == r))] for r in extensions}  # at its longest
    longest = max(set.intersection(*(set(ppl[r]) for r in extensions)))
    most_moved = max(extensions, key=lambda r: js[r])
    worst = max(extensions, key=lambda r: ppl[r][longest])
    verdicts[2] = most_moved == worst
    # 3. Entropy against pass rate over the passkey/needle cells.
    cells = [r for name in ("passkey.csv", "needle.csv") for r in rows(report, name)]
    rho = spearman([float(c["mean_entropy"]) for c in cells], [float(c["pass_rate"]) for c in cells])
    z = rho * math.sqrt(len(cells) - 1)
    p = 0.5 * math.erfc(-z / math.sqrt(2))  # one-sided: P(Z <= z)
    # Not measured when nothing varies (rho undefined): eval/findings.h.
    verdicts[3] = None if math.isnan(rho) else (rho < 0 and p < 0.05)
    # 4. Each (shorter, longer) pair of one method: the longer has the lower
    #    entropy at the common attention length and the higher mean score over
    #    the cells both have.
    entropy = layer_means(report, "entropy")
    ok = bool(ablations)
    for short, long in ablations:
        common = max(n for (run, n) in entropy if run == short and (long, n) in entropy)
        e_short, e_long = entropy[(short, common)], entropy[(long, common)]
        s_short, s_long = scores(report, short), scores(report, long)
        keys = set(s_short) & set(s_long)
        if not keys:
            ok = None
            break
        m_short = sum(s_short[k] for k in keys) / len(keys)
        m_long = sum(s_long[k] for k in keys) / len(keys)
        print(f"  4: {short} -> {long}: entropy@{common} {e_short:.4f} -> {e_long:.4f}, "
              f"score {m_short:.3f} -> {m_long:.3f} over {len(keys)} cells")
        ok = ok and e_long < e_short and m_long > m_short
    verdicts[4] = ok if ablations else None
    # 5. Entropy-aware ABF has the lowest ppl at 2x its training length.
    at = 2 * train[eabf]
    verdicts[5] = min(extensions, key=lambda r: ppl[r][at]) == eabf
    print(f"  1: base x{max(past) / ppl[base][lb]:.2f} past {lb}; "
          + ", ".join(f"{r} {ppl[r][train[r]] / ppl[r][lb]:.3f}" for r in extensions))
    print(f"  2: largest JS {most_moved} ({js[most_moved]:.4f}), worst ppl@{longest} {worst}")
    print(f"  3: rho {rho:.3f} over {len(cells)} cells, one-sided p {p:.3g}")
    print(f"  5: lowest ppl@{at}: {min(extensions, key=lambda r: ppl[r][at])}")
    return verdicts


def reported(report):
    """Finding number -> True (reproduced) / False (not reproduced) / None
    (not measured), from findings.md's table."""
    out = {}
    for line in open(os.path.join(report, "findings.md")):
        m = re.match(r"\| (\d) \| .* \| \*\*(reproduced|not reproduced|not measured)\*\* \|", line)
        if m:
            out[int(m.group(1))] = {"reproduced": True, "not reproduced": False}.get(m.group(2))
    return out


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("report")
    ap.add_argument("--base", required=True)
    ap.add_argument("--extensions", required=True)
    ap.add_argument("--ablation", action="append", default=[], help="SHORT:LONG (repeatable)")
    ap.add_argument("--eabf", required=True)
    a = ap.parse_args()
    ablations = [tuple(x.split(":")) for x in a.ablation]
    mine = decide(a.report, a.base, a.extensions.split(","), ablations, a.eabf)
    theirs = reported(a.report)
    bad = [n for n in range(1, 6) if theirs.get(n) != mine[n]]
    for n in range(1, 6):
        word = lambda v: {True: "reproduced", False: "not reproduced", None: "not measured"}[v]
        print(f"finding {n}: findings.md {word(theirs.get(n))}, independent reading {word(mine[n])}")
    if bad:
        print(f"check_findings: findings.md disagrees with the CSVs on finding(s) {bad}", file=sys.stderr)
        return 1
    print("check_findings: findings.md agrees with an independent reading of the CSVs")
    return 0


if __name__ == "__main__":
    sys.exit(main())
