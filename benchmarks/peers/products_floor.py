#!/usr/bin/env python3
"""How fast a forward could be if it were nothing but its matrix products.

For the peer table's 16- and 32-token cells, times the four products of one layer (fused QKV,
attention output, FFN in, FFN out) with bench_ops GemmRoute on packed weights (route 3, the
CLI's), one weight matrix at a time, hot in cache; 12 x their sum is a floor under a 12-layer
forward with that kernel: attention, LayerNorm, GELU and residuals cost extra. Rounds interleave
the products with the FMA peak (peak.cpp). Compares the floor with half the best other peer's
median in the given peer runs: the time a shared stack must beat for the performance issue's
target 2 (2x the best peer).

  products_floor.py --bench-ops build/release/benchmarks/bench_ops --peak benchmarks/peers/build/peak \\
      --rounds 3 --out benchmarks/peers/results/DATE-products-floor \\
      benchmarks/peers/results/RUN1 [RUN2 ...]

Writes OUT/raw.txt (every measurement) and OUT/table.md; --from-raw redraws the table from raw.txt. Needs a quiet machine (~5 minutes);
unsets OPENBLAS_CORETYPE and OPENBLAS_L2_SIZE for the commands it runs.
"""
import argparse
import datetime
import json
import os
import pathlib
import re
import statistics
import subprocess

MODELS = {"bert-base": (768, 3072), "seed": (512, 2048)}
CELLS = [("bert-base", 16), ("bert-base", 32), ("seed", 16), ("seed", 32)]


def layer_products(d, ff, tokens):
    """(tokens, in, out) of one post-LN layer's products, QKV fused."""
    return [(tokens, d, 3 * d), (tokens, d, d), (tokens, d, ff), (tokens, ff, d)]


def run(cmd):
    env = {k: v for k, v in os.environ.items() if k not in ("OPENBLAS_CORETYPE", "OPENBLAS_L2_SIZE")}
    return subprocess.run(cmd, env=env, check=True, capture_output=True, text=True).stdout


def measure(args, raw):
    peaks, times = [], []
    shapes = sorted({s for m, t in CELLS for s in layer_products(*MODELS[m], t)})
    pattern = "|".join(f"tokens:{t}/in:{k}/out:{n}/" for t, k, n in shapes)
    for r in range(args.rounds):
        peak = {th: json.loads(run([args.peak, str(th)]).strip().splitlines()[-1])["gflops"] for th in (1, 2)}
        out = run([args.bench_ops, f"--benchmark_filter=GemmRoute/({pattern})threads:(1|2)/route:3/",
                   "--benchmark_repetitions=3", "--benchmark_report_aggregates_only=true",
                   "--benchmark_format=csv"])
        t = {}
        for line in out.splitlines():
            m = re.match(r'"GemmRoute/tokens:(\d+)/in:(\d+)/out:(\d+)/threads:(\d)/route:3/real_time_median",'
                         r'\d+,([0-9.e+]+),', line)
            if m:
                t[tuple(int(x) for x in m.groups()[:4])] = float(m[5]) / 1e6  # ms
                raw.write(f"round {r + 1} {line}\n")
        raw.write(f"round {r + 1} peak {json.dumps(peak)}\n")
        raw.flush()
        peaks.append(peak)
        times.append(t)
    return peaks, times


def best_other(run_dir):
    """(model, tokens, threads) -> best median of PyTorch and ONNX Runtime, shared rows, ms."""
    best = {}
    path = pathlib.Path(run_dir) / "table.md"
    text = path.read_text()
    if "## Forward time" not in text:
        raise SystemExit(f"{path}: no '## Forward time' table (not a peer run's table.md?)")
    times = text.split("## Forward time", 1)[1].split("\n## ", 1)[0]  # the first table only
    for line in times.splitlines():
        cols = [c.strip() for c in line.split("|")]
        if len(cols) < 8 or cols[2] != "shared" or not re.match(r"1 x \d+$", cols[3]):
            continue
        try:
            medians = [float(c.split()[0].strip("*")) for c in cols[5:7]]
        except ValueError:
            continue
        best[(cols[1], int(cols[3].split()[-1]), int(cols[4]))] = min(medians)
    return best


def read_raw(path):
    """peaks, times as measure() returns them, from its raw.txt."""
    peaks, times = [], []
    for number, line in enumerate(pathlib.Path(path).read_text().splitlines(), 1):
        m = re.match(r"round (\d+) (.*)", line)
        if not m:
            raise SystemExit(f"{path}:{number}: not a line products_floor.py wrote: {line!r}")
        r, rest = int(m[1]) - 1, m[2]
        while len(times) <= r:
            times.append({})
        if rest.startswith("peak "):
            peaks.append({int(k): v for k, v in json.loads(rest[5:]).items()})
            continue
        m = re.match(r'"GemmRoute/tokens:(\d+)/in:(\d+)/out:(\d+)/threads:(\d)/route:3/real_time_median",'
                     r'\d+,([0-9.e+]+),', rest)
        if not m:
            raise SystemExit(f"{path}:{number}: not a GemmRoute median or a peak: {line!r}")
        times[r][tuple(int(x) for x in m.groups()[:4])] = float(m[5]) / 1e6
    return peaks, times


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--bench-ops")
    ap.add_argument("--peak")
    ap.add_argument("--from-raw", action="store_true", help="redraw OUT/table.md from OUT/raw.txt")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--out", required=True)
    ap.add_argument("runs", nargs="*", help="peer result directories (with table.md) to compare with")
    args = ap.parse_args()
    out = pathlib.Path(args.out)
    if args.from_raw:
        peaks, times = read_raw(out / "raw.txt")
    else:
        if not args.bench_ops or not args.peak:
            ap.error("--bench-ops and --peak are needed to measure (or --from-raw)")
        out.mkdir(parents=True, exist_ok=True)
        with open(out / "raw.txt", "w") as raw:
            peaks, times = measure(args, raw)
    peers = {pathlib.Path(r).name: best_other(r) for r in args.runs}
    lines = [f"# Products-only floor: {datetime.datetime.now(datetime.timezone.utc).isoformat(timespec='seconds')}", "",
             f"{args.rounds} rounds; per round: FMA peak on 1 and 2 threads (peak.cpp, best of 5), then bench_ops "
             "GemmRoute route 3 (packed weights, hot in cache), median of 3 repetitions per product. "
             "Floor = 12 x the sum of one layer's four products. Per-round values, in round order.", "",
             "| model | B x S | threads | products of 12 layers, ms | GFLOP/s | % of that round's peak |"
             + "".join(f" best other peer / 2 in {name}, ms |" for name in peers),
             "|---|---|---|---|---|---|" + "---|" * len(peers)]
    for model, tokens in CELLS:
        for th in (1, 2):
            shapes = layer_products(*MODELS[model], tokens)
            flop = sum(2 * t * k * n for t, k, n in shapes)
            ms = [12 * sum(t[(s[0], s[1], s[2], th)] for s in shapes) for t in times]
            rate = [12 * flop / (x / 1e3) / 1e9 for x in ms]
            pct = [100 * g / p[th] for g, p in zip(rate, peaks)]
            row = (f"| {model} | 1 x {tokens} | {th} | {' / '.join(f'{x:.2f}' for x in ms)} "
                   f"(median {statistics.median(ms):.2f}) | {' / '.join(f'{x:.0f}' for x in rate)} | "
                   f"{' / '.join(f'{x:.0f}' for x in pct)} |")
            for name, best in peers.items():
                b = best.get((model, tokens, th))
                row += f" {b / 2:.2f} |" if b is not None else " - |"
            lines.append(row)
    (out / "table.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
