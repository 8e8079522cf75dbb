#!/usr/bin/python3
"""Plots of rotor's evaluation CSVs (the PNGs of `rotor report`).

Usage:
    /usr/bin/python3 eval/plots.py --out DIR EVAL_DIR [EVAL_DIR ...]

Each EVAL_DIR holds some of ppl.csv, passkey.csv, needle.csv, ruler.csv and attention.csv
as written by `rotor eval` into <run dir>/eval/, or the merged copies that
`rotor report` writes into its --out directory. Rows of all the directories are
pooled and told apart by their `run` column; when a run has several steps only
its latest step is plotted. Written into DIR:

    ppl_vs_length.png     perplexity (log scale) vs length, one curve per run,
                          each run's training length a dashed vertical line
    passkey_<run>.png     pass rate heatmap, length x depth, annotated cells
    needle_<run>.png      the same for the needle grid
    ruler_<run>.png       RULER score heatmap, task x length, annotated cells, with
                          the average over the tasks as the last row
    entropy_by_layer.png  mean attention entropy (head -1) by query-position
                          bucket, one line per layer, one panel per run, at the
                          run's longest length
    ppl_by_position.png   loss by position bucket, one line per run, at each
                          run's longest length

A plot without data is skipped with a message on stdout (exit status 0). A
malformed CSV (wrong header, wrong number of fields, a value that is not a
number) is an error naming the file and line: exit status 1. Bad arguments or
a missing matplotlib: exit status 2. The Agg backend is used (no display).
"""

import argparse
import csv
import math
import os
import re
import sys

PPL_HEADER = ["run", "step", "train_length", "length", "bucket", "documents", "tokens", "loss", "ppl"]
GRID_HEADER = ["run", "step", "length", "depth", "trials", "passed", "pass_rate", "mean_entropy"]
ATTENTION_HEADER = ["run", "step", "length", "layer", "head", "bucket", "metric", "value", "reference"]
RULER_HEADER = ["run", "step", "task", "length", "samples", "passed", "pass_rate", "mean_entropy"]

# Per file: its header and the type of each column (str, int or float).
SCHEMAS = {
    "ppl.csv": (PPL_HEADER, [str, int, int, int, str, int, int, float, float]),
    "passkey.csv": (GRID_HEADER, [str, int, int, float, int, int, float, float]),
    "needle.csv": (GRID_HEADER, [str, int, int, float, int, int, float, float]),
    "attention.csv": (ATTENTION_HEADER, [str, int, int, int, int, str, str, float, str]),
    "ruler.csv": (RULER_HEADER, [str, int, str, int, int, int, float, float]),
}


class CsvError(Exception):
    """A malformed CSV; the message names the file and line."""


def read_csv(path, name):
    """Rows of `path` as dicts with typed values; raises CsvError."""
    header, types = SCHEMAS[name]
    rows = []
    with open(path, newline="", encoding="utf-8") as f:
        reader = csv.reader(f)
        for line_no, fields in enumerate(reader, start=1):
            if line_no == 1:
                if fields != header:
                    raise CsvError("%s:1: expected header '%s', got '%s'"
                                   % (path, ",".join(header), ",".join(fields)))
                continue
            if not fields:
                continue
            if len(fields) != len(header):
                raise CsvError("%s:%d: expected %d fields, got %d"
                               % (path, line_no, len(header), len(fields)))
            row = {}
            for key, kind, text in zip(header, types, fields):
                try:
                    if kind is float and not text.strip():
                        row[key] = float("nan")  # not measured
                    else:
                        row[key] = kind(text) if kind is not str else text
                except ValueError:
                    raise CsvError("%s:%d: column '%s': expected %s, got '%s'"
                                   % (path, line_no, key, kind.__name__, text)) from None
            rows.append(row)
        if reader.line_num == 0:
            raise CsvError("%s:1: empty file, expected header '%s'" % (path, ",".join(header)))
    return rows


def load(dirs):
    """{file name: pooled rows} over the eval directories (missing files skipped)."""
    data = {name: [] for name in SCHEMAS}
    for d in dirs:
        for name in SCHEMAS:
            path = os.path.join(d, name)
            if os.path.isfile(path):
                data[name].extend(read_csv(path, name))
            else:
                print("plots: no %s in %s" % (name, d))
    return data


def latest_step(rows):
    """The rows of each run's latest step."""
    last = {}
    for r in rows:
        last[r["run"]] = max(last.get(r["run"], r["step"]), r["step"])
    return [r for r in rows if r["step"] == last[r["run"]]]


def runs_of(rows):
    """Run names in order of first appearance."""
    seen = []
    for r in rows:
        if r["run"] not in seen:
            seen.append(r["run"])
    return seen


def bucket_key(label):
    """Sort key of a bucket label such as '0-1K', '1K-2K', '64-128'."""
    m = re.match(r"\s*([0-9.]+)\s*([KkMm]?)", label)
    if not m:
        return (1, label)
    scale = {"": 1, "k": 1024, "m": 1024 * 1024}[m.group(2).lower()]
    return (0, float(m.group(1)) * scale)


def file_safe(name):
    return re.sub(r"[^A-Za-z0-9._=+-]", "_", name) or "run"


def length_label(n):
    if n >= 1024 and n % 1024 == 0:
        return "%dK" % (n // 1024)
    return str(n)


def plot_ppl_vs_length(plt, rows, out):
    rows = [r for r in latest_step(rows) if r["bucket"] == "all"]
    if not rows:
        print("plots: ppl_vs_length.png: no data (ppl.csv rows with bucket 'all')")
        return
    fig, ax = plt.subplots(figsize=(7, 4.5))
    lengths = sorted({r["length"] for r in rows})
    marked = set()
    for i, run in enumerate(runs_of(rows)):
        color = "C%d" % (i % 10)
        pts = sorted((r["length"], r["ppl"]) for r in rows if r["run"] == run)
        ax.plot([p[0] for p in pts], [p[1] for p in pts], marker="o", color=color, label=run)
        train = {r["train_length"] for r in rows if r["run"] == run and r["train_length"] > 0}
        for t in sorted(train):
            ax.axvline(t, color=color, linestyle="--", linewidth=1, alpha=0.7)
            marked.add(t)
    ax.set_xscale("log", base=2)
    ax.set_yscale("log")
    ax.yaxis.set_major_formatter(plt.matplotlib.ticker.FuncFormatter(lambda v, _: "%g" % v))
    ax.yaxis.set_minor_formatter(plt.matplotlib.ticker.FuncFormatter(lambda v, _: "%g" % v))
    ax.set_xticks(lengths)
    ax.set_xticklabels([length_label(n) for n in lengths])
    for t in sorted(marked):
        ax.annotate("train %s" % length_label(t), xy=(t, 1.0), xycoords=("data", "axes fraction"),
                    xytext=(2, -12), textcoords="offset points", fontsize="small", color="gray")
    ax.set_xlabel("evaluation length (tokens); dashed: training length")
    ax.set_ylabel("perplexity (log scale)")
    ax.set_title("Perplexity vs length")
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize="small")
    save(fig, plt, out, "ppl_vs_length.png")


def plot_grid(plt, rows, out, task):
    rows = latest_step(rows)
    if not rows:
        print("plots: %s_<run>.png: no data (%s.csv)" % (task, task))
        return
    for run in runs_of(rows):
        mine = [r for r in rows if r["run"] == run]
        lengths = sorted({r["length"] for r in mine})
        depths = sorted({r["depth"] for r in mine})
        cells = {}
        for r in mine:  # several rows for one cell: pool their trials
            t, p = cells.get((r["length"], r["depth"]), (0, 0))
            cells[(r["length"], r["depth"])] = (t + r["trials"], p + r["passed"])
        grid = [[float("nan")] * len(lengths) for _ in depths]
        for (length, depth), (trials, passed) in cells.items():
            rate = passed / trials if trials > 0 else float("nan")
            grid[depths.index(depth)][lengths.index(length)] = rate
        fig, ax = plt.subplots(figsize=(2.5 + 0.8 * len(lengths), 1.8 + 0.45 * len(depths)))
        im = ax.imshow(grid, cmap="RdYlGn", vmin=0.0, vmax=1.0, aspect="auto", origin="upper")
        for y, row in enumerate(grid):
            for x, v in enumerate(row):
                if not math.isnan(v):
                    ax.text(x, y, "%.2f" % v, ha="center", va="center", fontsize=8)
        ax.set_xticks(range(len(lengths)))
        ax.set_xticklabels([length_label(n) for n in lengths])
        ax.set_yticks(range(len(depths)))
        ax.set_yticklabels(["%g%%" % (100 * d) for d in depths])
        ax.set_xlabel("context length")
        ax.set_ylabel("depth")
        ax.set_title("%s pass rate: %s" % (task, run))
        fig.colorbar(im, ax=ax, label="pass rate")
        save(fig, plt, out, "%s_%s.png" % (task, file_safe(run)))


def plot_ruler(plt, rows, out):
    """Per run: the mean score (pass_rate) of each task at each length, and
    the average over the tasks per length (RULER's headline row)."""
    rows = latest_step(rows)
    if not rows:
        print("plots: ruler_<run>.png: no data (ruler.csv)")
        return
    for run in runs_of(rows):
        mine = [r for r in rows if r["run"] == run]
        lengths = sorted({r["length"] for r in mine})
        tasks = []
        for r in mine:
            if r["task"] not in tasks:
                tasks.append(r["task"])
        sums = {}
        for r in mine:  # several rows for one cell: weigh by samples
            n, total = sums.get((r["task"], r["length"]), (0, 0.0))
            sums[(r["task"], r["length"])] = (n + r["samples"], total + r["samples"] * r["pass_rate"])
        grid = [[float("nan")] * len(lengths) for _ in tasks]
        for (task, length), (n, total) in sums.items():
            grid[tasks.index(task)][lengths.index(length)] = total / n if n > 0 else float("nan")
        average = []
        for x in range(len(lengths)):
            column = [grid[y][x] for y in range(len(tasks)) if not math.isnan(grid[y][x])]
            average.append(sum(column) / len(column) if column else float("nan"))
        grid.append(average)
        fig, ax = plt.subplots(figsize=(3.5 + 0.8 * len(lengths), 1.8 + 0.4 * len(grid)))
        im = ax.imshow(grid, cmap="RdYlGn", vmin=0.0, vmax=1.0, aspect="auto", origin="upper")
        for y, row in enumerate(grid):
            for x, v in enumerate(row):
                if not math.isnan(v):
                    ax.text(x, y, "%.2f" % v, ha="center", va="center", fontsize=8,
                            fontweight="bold" if y == len(tasks) else "normal")
        ax.axhline(len(tasks) - 0.5, color="black", linewidth=1)
        ax.set_xticks(range(len(lengths)))
        ax.set_xticklabels([length_label(n) for n in lengths])
        ax.set_yticks(range(len(grid)))
        ax.set_yticklabels(tasks + ["average"])
        ax.set_xlabel("context length")
        ax.set_title("RULER score: %s" % run)
        fig.colorbar(im, ax=ax, label="score (string_match_all)")
        save(fig, plt, out, "ruler_%s.png" % file_safe(run))


def longest(rows):
    """Each run's rows at its longest length."""
    top = {}
    for r in rows:
        top[r["run"]] = max(top.get(r["run"], 0), r["length"])
    return [r for r in rows if r["length"] == top[r["run"]]]


def plot_entropy_by_layer(plt, rows, out):
    rows = [r for r in latest_step(rows)
            if r["metric"] == "entropy" and r["head"] == -1 and r["bucket"] != "all"]
    rows = longest(rows)
    if not rows:
        print("plots: entropy_by_layer.png: no data (attention.csv entropy rows, head -1, by bucket)")
        return
    runs = runs_of(rows)
    fig, axes = plt.subplots(1, len(runs), figsize=(5 * len(runs), 4), squeeze=False, sharey=True)
    for ax, run in zip(axes[0], runs):
        mine = [r for r in rows if r["run"] == run]
        buckets = sorted({r["bucket"] for r in mine}, key=bucket_key)
        layers = sorted({r["layer"] for r in mine})
        cmap = plt.get_cmap("viridis")
        for j, layer in enumerate(layers):
            values = {r["bucket"]: r["value"] for r in mine if r["layer"] == layer}
            xs = [i for i, b in enumerate(buckets) if b in values]
            ax.plot(xs, [values[buckets[i]] for i in xs], marker=".",
                    color=cmap(j / max(1, len(layers) - 1)), label="layer %d" % layer)
        ax.set_xticks(range(len(buckets)))
        ax.set_xticklabels(buckets, rotation=45, ha="right", fontsize="small")
        ax.set_xlabel("query position bucket")
        ax.set_title("%s (length %s)" % (run, length_label(mine[0]["length"])))
        ax.grid(True, alpha=0.3)
        if len(layers) <= 12:
            ax.legend(fontsize="x-small")
    axes[0][0].set_ylabel("mean attention entropy (nats)")
    save(fig, plt, out, "entropy_by_layer.png")


def plot_ppl_by_position(plt, rows, out):
    rows = longest([r for r in latest_step(rows) if r["bucket"] != "all"])
    if not rows:
        print("plots: ppl_by_position.png: no data (ppl.csv rows by position bucket)")
        return
    buckets = sorted({r["bucket"] for r in rows}, key=bucket_key)
    fig, ax = plt.subplots(figsize=(7, 4.5))
    for i, run in enumerate(runs_of(rows)):
        values = {r["bucket"]: r["loss"] for r in rows if r["run"] == run}
        length = max(r["length"] for r in rows if r["run"] == run)
        xs = [k for k, b in enumerate(buckets) if b in values]
        ax.plot(xs, [values[buckets[k]] for k in xs], marker="o", color="C%d" % (i % 10),
                label="%s (length %s)" % (run, length_label(length)))
    ax.set_xticks(range(len(buckets)))
    ax.set_xticklabels(buckets, rotation=45, ha="right")
    ax.set_xlabel("position bucket")
    ax.set_ylabel("mean loss (nats/token)")
    ax.set_title("Loss by position at the longest length")
    ax.grid(True, alpha=0.3)
    ax.legend(fontsize="small")
    save(fig, plt, out, "ppl_by_position.png")


def save(fig, plt, out, name):
    path = os.path.join(out, name)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    print("plots: wrote %s" % path)


def main(argv):
    parser = argparse.ArgumentParser(description="Plots of rotor eval CSVs.")
    parser.add_argument("--out", required=True, help="directory for the PNG files")
    parser.add_argument("dirs", nargs="+", metavar="EVAL_DIR",
                        help="directories holding ppl.csv, passkey.csv, needle.csv, ruler.csv, "
                             "attention.csv")
    args = parser.parse_args(argv)
    try:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError as e:
        print("plots: matplotlib is not available (%s); install python3-matplotlib" % e,
              file=sys.stderr)
        return 2
    try:
        data = load(args.dirs)
    except CsvError as e:
        print("plots: %s" % e, file=sys.stderr)
        return 1
    except OSError as e:
        print("plots: %s" % e, file=sys.stderr)
        return 1
    os.makedirs(args.out, exist_ok=True)
    plot_ppl_vs_length(plt, data["ppl.csv"], args.out)
    plot_ppl_by_position(plt, data["ppl.csv"], args.out)
    plot_grid(plt, data["passkey.csv"], args.out, "passkey")
    plot_grid(plt, data["needle.csv"], args.out, "needle")
    plot_ruler(plt, data["ruler.csv"], args.out)
    plot_entropy_by_layer(plt, data["attention.csv"], args.out)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
