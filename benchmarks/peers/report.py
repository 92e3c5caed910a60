"""Markdown table and GFLOP/s plot from a peer-benchmark results.json.

Usage: /usr/bin/python3 report.py RESULTS_DIR   (rewrites table.md, gflops.svg and gflops.png)
       /usr/bin/python3 report.py --index RESULTS_ROOT   (writes RESULTS_ROOT/README.md: every run)
"""
import json
import os
import sys

from workloads import MODELS, POLICY_LABEL, block_matrix_bytes, weight_matrix_bytes

LABEL = {"pytorch": "PyTorch", "onnxruntime": "ONNX Runtime", "shareformer": "shareformer",
         "shareformer-bf16": "shareformer bf16 weights",
         "shareformer-bf16dot": "shareformer bf16 products"}
COLOR = {"pytorch": "#d62728", "onnxruntime": "#1f77b4", "shareformer": "#2ca02c",
         "shareformer-bf16": "#9467bd", "shareformer-bf16dot": "#ff7f0e"}
ALL_PEERS = ("pytorch", "onnxruntime", "shareformer", "shareformer-bf16", "shareformer-bf16dot")
FP32_PEERS = ALL_PEERS[:3]  # the "best" of a row is the fastest of these
BF16_PEERS = ALL_PEERS[3:]  # stream their weights as bfloat16


def fmt_ms(x):
    return f"{x:.1f}" if x >= 10 else f"{x:.2f}"


def cell_rows(results):
    """Per cell: the peers' summaries, best peer and ratios, in table order."""
    rows = []
    for c in results["cells"]:
        s = {p: rec["summary"] for p, rec in c["peers"].items() if "summary" in rec}
        fp32 = [p for p in s if p in FP32_PEERS]
        best = min(fp32, key=lambda p: s[p]["median_ms"]) if fp32 else None
        rows.append((c, s, best))
    order = {m: i for i, m in enumerate(MODELS)}
    rows.sort(key=lambda r: (order.get(r[0]["model"], 99), r[0]["tokens"], r[0]["batch"],
                             r[0]["policy"], r[0]["threads"]))
    return rows


def gflops(c, ms):
    return c["flops"] / (ms * 1e-3) / 1e9


def table_md(results):
    peers = [p for p in ALL_PEERS if p in results["peers"]]
    v = results["versions"]
    peak = results["peak_gflops"]
    lines = []
    lines.append(f"# Peer benchmark{' (quick run)' if results['quick'] else ''}: "
                 f"{results['date']}")
    lines.append("")
    lines.append(f"Machine: {v.get('cpu')}, {v.get('cpus')} CPUs, Linux {v.get('kernel')}. "
                 f"shareformer tree: {v.get('git')}.  ")
    peer_v = []
    if "pytorch" in peers:
        peer_v.append(f"PyTorch {v.get('pytorch')} (fast path)")
    if "onnxruntime" in peers:
        peer_v.append(f"ONNX Runtime {v.get('onnxruntime')} (onnxruntime-node, Node {v.get('node')})")
    if "shareformer" in peers:
        peer_v.append(f"shareformer ({v.get('shareformer')})")
    if "shareformer-bf16" in peers:
        ran = [c["tokens"] for c in results["cells"] if "shareformer-bf16" in c["peers"]]
        peer_v.append("shareformer with `--weights bf16` (weights rounded to bfloat16 and streamed "
                      "as bfloat16, float arithmetic; not fp32, so never a row's best; only run "
                      f"where products read the bfloat16 copy, here up to {max(ran, default=0)} "
                      "tokens)")
    if "shareformer-bf16dot" in peers:
        peer_v.append("shareformer with `--weights bf16dot` (bfloat16 products with float sums on "
                      "AVX512-BF16 dot products: weights and each product's input rounded to "
                      "bfloat16; a different precision from fp32, so never a row's best)")
    lines.append("Peers: " + "; ".join(peer_v) + ".  ")
    def per_thread(by_threads, key, unit="GFLOP/s", digits=0):
        return ", ".join(f"{p[key]:.{digits}f} {unit} on {t} thread{'s' if t != '1' else ''}"
                         for t, p in by_threads.items())

    lines.append("Measured FMA peak: " + per_thread(peak, "gflops") + " (peak.cpp, best of 5).  ")
    if all("bf16dot_gflops" in p for p in peak.values()):
        lines.append("Measured peak of AVX512-BF16's vdpbf16ps (the bf16 products' instruction, "
                     "counted as 64 FLOPs on 512 bits): " + per_thread(peak, "bf16dot_gflops") + ".  ")
    read_rates = [
        ("read_gbs", weight_matrix_bytes,
         "Measured read rate of an unshared stack's weight matrices (peak.cpp: a buffer of their "
         "size, shared out among the threads, summed pass after pass with vector loads and nothing "
         "else; best of 5): "),
        ("read_gbs_block", block_matrix_bytes,
         "Measured read rate of one block's weight matrices, which a shared stack reads once per "
         "layer (the same, with a buffer of their size, which the caches may hold): ")]
    for key, nbytes, text in read_rates:
        read = results.get(key) or {}
        if read:
            lines.append(text + "; ".join(f"{m} ({nbytes(m) / 2**20:.0f} MiB) "
                                          + per_thread(r, "read_gbs", "GB/s", 1)
                                          for m, r in read.items()) + ".  ")
    st = results["settings"]
    waited = sum(l.get("waited_s", 0) for l in results["load"])
    lines.append(f"{st['rounds']} interleaved rounds; per cell and round {st['warmup']} warm-up run(s), "
                 f"then {st['min_iters']}-{st['max_iters']} timed runs (about {st['target_ms']:.0f} ms "
                 f"of work). Whole run: {results['elapsed_s'] / 60:.1f} min"
                 + (f", {waited / 60:.1f} of them waiting for the load to drop" if waited > 1
                    else "")
                 + ". Load average (1 min) before the rounds: "
                 + ", ".join(f"{l['before'][0]:.2f}" for l in results["load"])
                 + (" (the machine was busy: times are inflated and scattered)"
                    if max(l["before"][0] for l in results["load"]) > 1.0 else "") + ".  ")
    removed = results["environment"]["removed_from_peers_env"]
    if removed:
        lines.append("Removed from the peers' environment: "
                     + ", ".join(f"`{k}={val}`" for k, val in removed.items())
                     + "; PyTorch ran with `OMP_WAIT_POLICY=PASSIVE`, `OMP_NUM_THREADS` = "
                       "`OPENBLAS_NUM_THREADS` = threads.")
    for n in results["notes"]:
        lines.append(f"\n> Note: {n}")
    for e in results["errors"]:
        lines.append(f"\n> Error: {e}")
    lines.append("")
    lines.append("## Forward time, ms")
    lines.append("")
    lines.append("Median of the per-round medians (min-max of the per-round medians), and the "
                 "ratio to the fastest peer of that row in this run (x1.00 = fastest, in bold). "
                 "Layer stack only, fp32, input [B, S, d], no padding.")
    lines.append("")
    head = ["model", "sharing", "B x S", "threads"] + [LABEL[p] for p in peers] + ["best"]
    if "shareformer" in peers and len(peers) > 1:
        head.append("shareformer speed-up vs best other")
    if "shareformer-bf16" in peers:
        head.append("bf16 speed-up vs best other")
    if "shareformer-bf16dot" in peers:
        head.append("bf16 products speed-up vs best other")
    lines.append("| " + " | ".join(head) + " |")
    lines.append("|" + "---|" * len(head))
    rows = cell_rows(results)
    for c, s, best in rows:
        r = [c["model"], POLICY_LABEL[c["policy"]], f"{c['batch']} x {c['seq']}", str(c["threads"])]
        for p in peers:
            if p not in s:
                r.append("-")
                continue
            x = s[p]
            txt = (f"{fmt_ms(x['median_ms'])} ({fmt_ms(x['round_min_ms'])}-"
                   f"{fmt_ms(x['round_max_ms'])}) x{x['median_ms'] / s[best]['median_ms']:.2f}")
            r.append(f"**{txt}**" if p == best else txt)
        r.append(LABEL[best] if best else "-")
        if "shareformer" in peers and len(peers) > 1:
            others = [s[p]["median_ms"] for p in s if p in FP32_PEERS and p != "shareformer"]
            r.append(f"{min(others) / s['shareformer']['median_ms']:.2f}x"
                     if others and "shareformer" in s else "-")
        if "shareformer-bf16" in peers:
            others = [s[p]["median_ms"] for p in s if p in FP32_PEERS and p != "shareformer"]
            r.append(f"{min(others) / s['shareformer-bf16']['median_ms']:.2f}x"
                     if others and "shareformer-bf16" in s else "-")
        if "shareformer-bf16dot" in peers:
            others = [s[p]["median_ms"] for p in s if p in FP32_PEERS and p != "shareformer"]
            r.append(f"{min(others) / s['shareformer-bf16dot']['median_ms']:.2f}x"
                     if others and "shareformer-bf16dot" in s else "-")
        lines.append("| " + " | ".join(r) + " |")
    lines.append("")
    lines.append("## Throughput, GFLOP/s (% of the measured peak for that thread count)")
    lines.append("")
    lines.append("GFLOP per forward from the analytic matmul count: layers x [2T(4d^2 + 2d ff) "
                 "+ 4BS^2 d], T = B S.")
    lines.append("")
    head = ["model", "sharing", "B x S", "threads", "GFLOP"] + [LABEL[p] for p in peers]
    lines.append("| " + " | ".join(head) + " |")
    lines.append("|" + "---|" * len(head))
    for c, s, best in rows:
        pk = peak[str(c["threads"])]["gflops"]
        r = [c["model"], POLICY_LABEL[c["policy"]], f"{c['batch']} x {c['seq']}",
             str(c["threads"]), f"{c['flops'] / 1e9:.1f}"]
        for p in peers:
            if p not in s:
                r.append("-")
                continue
            g = gflops(c, s[p]["median_ms"])
            r.append(f"{g:.0f} ({100 * g / pk:.0f} %)")
        lines.append("| " + " | ".join(r) + " |")
    lines.extend(targets_md(results))
    om = results.get("onnx_models")
    if om:
        lines.append("")
        lines.append("## ONNX files")
        lines.append("")
        lines.append(f"Exported from the PyTorch modules by torch {om['torch']} (opset {om['opset']}). "
                     "A shared stack is unrolled into 12 copies of the layer's nodes, all reading one "
                     "set of initializers. Max abs diff: ONNX Runtime's output vs PyTorch's on a "
                     "1 x 16 input (the worker checks it when it loads the model).")
        lines.append("")
        lines.append("| model | sharing | file MiB | PyTorch parameters MiB | max abs diff |")
        lines.append("|---|---|---|---|---|")
        sess = {}
        for c in results["cells"]:
            rec = c["peers"].get("onnxruntime", {})
            if "session" in rec and (c["model"], c["policy"]) not in sess:
                sess[(c["model"], c["policy"])] = rec["session"]
        for key, f in om["files"].items():
            model, policy = key.rsplit("-", 1)
            if model not in {c["model"] for c in results["cells"]}:
                continue
            se = sess.get((model, policy), {})
            diff = f"{se['max_abs_diff_vs_torch']:.1e}" if "max_abs_diff_vs_torch" in se else "-"
            lines.append(f"| {model} | {POLICY_LABEL[policy]} | {f['bytes'] / 2**20:.1f} | "
                         f"{f['torch_parameter_bytes'] / 2**20:.1f} | {diff} |")
    lines.append("")
    lines.append("![GFLOP/s vs tokens](gflops.svg)")
    lines.append("")
    return "\n".join(lines)


def streaming_need(results, c, ms, peer):
    """For a cell of a run that measured the read rate of its weights: ", its weights at X GB/s =
    Y % of the read rate" (unshared), or ", its block's weights 12 times at X GB/s = Y % of their
    read rate" (shared, from the block's own rate), the rate at which `peer`'s forward of `ms`
    would have to read them (half the bytes for the peers that stream bfloat16 weights); else
    ""."""
    key, what, of = {"none": ("read_gbs", "its weights", "the read rate"),
                     "all": ("read_gbs_block", f"its block's weights {MODELS[c['model']][3]} times",
                             "their read rate")}[c["policy"]]
    rate = (results.get(key) or {}).get(c["model"], {}).get(str(c["threads"]))
    if not rate:
        return ""
    fp32_bytes = weight_matrix_bytes(c["model"])
    gbs = (fp32_bytes // 2 if peer in BF16_PEERS else fp32_bytes) / (ms * 1e-3) / 1e9
    return f", {what} at {gbs:.1f} GB/s = {100 * gbs / rate['read_gbs']:.0f} % of {of}"


def round_medians(c):
    """{peer: {round: median ms}} of one cell, from the rounds each peer ran."""
    return {p: {r["round"]: r["median_ms"] for r in rec.get("rounds", [])}
            for p, rec in c["peers"].items()}


def span(values, digits, unit=""):
    """" (rounds a-b)": the range of a ratio taken within each round, or "" with fewer than two."""
    if len(values) < 2:
        return ""
    return f" (rounds {min(values):.{digits}f}-{max(values):.{digits}f}{unit})"


def round_speedups(rounds, peer):
    """The best other fp32 peer's median over `peer`'s, round by round (rounds both ran)."""
    mine = rounds.get(peer, {})
    out = []
    for r, ms in sorted(mine.items()):
        others = [rounds[p][r] for p in ("pytorch", "onnxruntime") if r in rounds.get(p, {})]
        if others:
            out.append(min(others) / ms)
    return out


def target_checks(results, peer="shareformer"):
    """The performance issue's targets 1-5, judged on this run's `peer` (fp32 shareformer unless
    told) against the fastest other fp32 peer of each cell (target 6, no allocation, is a unit
    test): target -> [(cell, margin, text)], margin = achieved / required, >= 1 when met."""
    peak = results["peak_gflops"]
    ms = {}  # (model, policy, batch, seq, threads) -> the judged peer's median
    # target -> [(cell, margin, text)]; margin = achieved / required, >= 1 when met
    checks = {t: [] for t in range(1, 6)}

    def name(c):
        return (f"{c['model']} {POLICY_LABEL[c['policy']]} {c['batch']} x {c['seq']}, "
                f"{c['threads']} t")

    rounds_of = {}  # (model, policy, batch, seq, threads) -> {round: the judged peer's median}
    for c, s, _ in cell_rows(results):
        if peer not in s:
            continue
        mine = s[peer]["median_ms"]
        key = (c["model"], c["policy"], c["batch"], c["seq"], c["threads"])
        ms[key] = mine
        rounds = round_medians(c)
        rounds_of[key] = rounds.get(peer, {})
        per_round = round_speedups(rounds, peer)
        others = [s[p]["median_ms"] for p in ("pytorch", "onnxruntime") if p in s]
        if others:
            speedup = min(others) / mine
            checks[1].append((name(c), speedup, f"{speedup:.2f}x" + span(per_round, 2, "x")))
            need = {"all": 2.0, "none": 1.5}.get(c["policy"])
            pk = peak.get(str(c["threads"]))
            if c["batch"] == 1 and c["seq"] in (16, 32) and need and pk:
                # the fraction of the FMA peak a whole forward would have to reach
                at = 100 * gflops(c, min(others) / need) / pk["gflops"]
                checks[2].append((name(c), speedup / need,
                                  f"{speedup:.2f}x" + span(per_round, 2, "x")
                                  + f" (needs {need:.1f}x = {at:.0f} % of peak"
                                  + streaming_need(results, c, min(others) / need, peer) + ")"))
            if c["batch"] == 1 and c["seq"] in (128, 512) and c["threads"] == 2:
                checks[3].append((name(c), 0.85 * speedup, f"{1 / speedup:.3f}"
                                  + span([1 / x for x in per_round], 3)))
        pk = peak.get(str(c["threads"]))
        if c["tokens"] >= 1024 and pk:
            pct = 100 * gflops(c, mine) / pk["gflops"]
            per_round_pct = [100 * gflops(c, t) / pk["gflops"] for t in rounds_of[key].values()]
            checks[4].append((name(c), pct / 85.0, f"{pct:.1f} %"
                              + span(per_round_pct, 0, " %")))
    for (model, policy, batch, seq, threads), t2 in sorted(ms.items()):
        t1 = ms.get((model, policy, batch, seq, 1))
        if threads != 2 or t1 is None:
            continue
        need = 1.8 if batch * seq >= 128 else 1.0
        r1, r2 = rounds_of[(model, policy, batch, seq, 1)], rounds_of[(model, policy, batch, seq, 2)]
        per_round = [r1[r] / r2[r] for r in sorted(r1) if r in r2]
        checks[5].append((f"{model} {POLICY_LABEL[policy]} {batch} x {seq}", t1 / t2 / need,
                          f"{t1 / t2:.2f}x" + span(per_round, 2, "x") + f" (needs {need:.1f}x)"))
    return checks


TARGET_TEXT = {
    1: "never slower than the best other peer (speed-up >= 1.0)",
    2: "1 x 16 and 1 x 32: shared >= 2x, unshared >= 1.5x the best other peer's speed",
    3: "1 x 128 and 1 x 512 on 2 threads: <= 0.85x the best other peer's time",
    4: ">= 1024 tokens: >= 85 % of the measured FMA peak",
    5: "2 threads >= 1.8x as fast as 1 from 128 tokens up, never slower below",
}


def targets_md(results):
    """The targets of target_checks as a markdown table."""
    checks = target_checks(results)
    what = TARGET_TEXT
    lines = ["", "## Targets of the performance issue", "",
             "fp32 shareformer only, every ratio from this run; the worst cell is the one furthest "
             "from (or closest to) its target. Each cell is judged on the peers' medians over the "
             "rounds; \"rounds a-b\" is the range of the same ratio taken within each round "
             "(each peer's median in that round), how far one round of this run moved it. Target "
             "6 (a steady-state forward allocates nothing) is a unit test, not a timing.", "",
             "| target | cells met | worst cell | cells missed |", "|---|---|---|---|"]
    for t in range(1, 6):
        cells = checks[t]
        if not cells:
            lines.append(f"| {t}: {what[t]} | no cell | - | - |")
            continue
        lines.append(target_row(f"{t}: {what[t]}", cells))
    if "shareformer-bf16dot" in results["peers"]:
        cells = target_checks(results, "shareformer-bf16dot")[2]
        if cells:
            lines += ["", "Target 2 again with `--weights bf16dot` (bfloat16 products with float "
                      "sums, the issue's suggested means for small inputs; **not fp32**, so it is "
                      "listed apart and never counts above):", "",
                      "| target | cells met | worst cell | cells missed |", "|---|---|---|---|"]
            lines.append(target_row(f"2 with bf16 products: {TARGET_TEXT[2]}", cells))
    return lines


def target_row(text, cells):
    """One row of the targets table: cells met, the worst cell, the cells missed."""
    met = sum(1 for _, margin, _ in cells if margin >= 1.0)
    worst = min(cells, key=lambda x: x[1])
    missed = "; ".join(f"{n}: {t}" for n, margin, t in cells if margin < 1.0) or "none"
    return f"| {text} | {met} of {len(cells)} | {worst[0]}: {worst[2]} | {missed} |"


def gflops_axis_top(results):
    """Top of the plot's GFLOP/s axis: 8 % above the highest FMA peak and the highest rate
    plotted (a peer's fastest round), so that no point or error bar is cut off; bfloat16 products
    can run above the fp32 FMA peak."""
    rates = [p["gflops"] for p in results["peak_gflops"].values()]
    for c, s, _ in cell_rows(results):
        rates += [gflops(c, summary["round_min_ms"]) for summary in s.values()]
    return 1.08 * max(rates)


def plot(results, out_dir):
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    peers = [p for p in ALL_PEERS if p in results["peers"]]
    threads = sorted({c["threads"] for c in results["cells"]})
    fig, axes = plt.subplots(1, len(threads), figsize=(6.4 * len(threads), 7.0), squeeze=False,
                             sharey=True)
    rows = cell_rows(results)
    for ax, t in zip(axes[0], threads):
        for p in peers:
            for policy, style in (("all", "-"), ("none", "--")):
                for model, marker, filled in (("bert-base", "o", True), ("seed", "s", False)):
                    pts = [(c["tokens"], gflops(c, s[p]["median_ms"]),
                            gflops(c, s[p]["round_max_ms"]), gflops(c, s[p]["round_min_ms"]))
                           for c, s, _ in rows
                           if c["threads"] == t and c["policy"] == policy and c["model"] == model
                           and p in s and c["batch"] * c["seq"] == c["tokens"]]
                    if not pts:
                        continue
                    pts.sort()
                    xs = [q[0] for q in pts]
                    ys = [q[1] for q in pts]
                    err = [[q[1] - q[2] for q in pts], [q[3] - q[1] for q in pts]]
                    label = f"{LABEL[p]}, {POLICY_LABEL[policy]}"
                    if model != "bert-base":
                        label += f" ({model} d={MODELS[model][0]})"
                    ax.errorbar(xs, ys, yerr=err, color=COLOR[p], linestyle=style if model ==
                                "bert-base" else "none", marker=marker, capsize=3,
                                markerfacecolor=COLOR[p] if filled else "white",
                                alpha=1.0 if policy == "all" else 0.75, label=label)
        pk = results["peak_gflops"][str(t)]["gflops"]
        ax.axhline(pk, color="grey", linestyle=":", linewidth=1)
        ax.text(min(c["tokens"] for c in results["cells"]), pk, f" FMA peak {pk:.0f}", va="bottom",
                color="grey", fontsize=8)
        ax.set_xscale("log", base=2)
        tok = sorted({c["tokens"] for c in results["cells"]})
        ax.set_xticks(tok)
        ax.set_xticklabels([str(x) for x in tok])
        ax.set_xlabel("tokens (B x S)")
        ax.set_title(f"{t} thread{'s' if t > 1 else ''}")
        ax.grid(True, alpha=0.3)
    top = gflops_axis_top(results)
    for ax in axes[0]:
        ax.set_ylim(0, top)
    axes[0][0].set_ylabel("GFLOP/s (analytic matmul count / median time)")
    handles, labels = axes[0][0].get_legend_handles_labels()
    fig.legend(handles, labels, loc="lower center", ncol=4, fontsize=8, frameon=False,
               bbox_to_anchor=(0.5, 0.03))
    fig.suptitle("12-layer post-LN encoder stack, fp32: bert-base d=768 (lines), "
                 "seed d=512 (hollow squares)" + (" - quick run" if results["quick"] else ""),
                 fontsize=10)
    fig.text(0.01, 0.01, f"{results['date']} | {results['versions'].get('cpu')} | "
             "error bars: min-max of per-round medians", fontsize=7, color="grey")
    fig.tight_layout(rect=(0, 0.2, 1, 0.95))  # the legend's rows below the axes' labels
    for ext in ("svg", "png"):
        fig.savefig(os.path.join(out_dir, f"gflops.{ext}"), dpi=110)
    plt.close(fig)


def write_all(results, out_dir):
    with open(os.path.join(out_dir, "table.md"), "w") as f:
        f.write(table_md(results))
    plot(results, out_dir)


def index_md(root):
    """One row per run under root (each a folder with a results.json), oldest first: where and
    on what tree it ran, the measured peak, and the targets each met."""
    runs = []
    for name in sorted(os.listdir(root)):
        path = os.path.join(root, name, "results.json")
        if os.path.isfile(path):
            with open(path) as f:
                runs.append((name, json.load(f)))
    runs.sort(key=lambda r: r[1]["date"])
    lines = ["# Peer runs", "",
             "Every run of `run.sh` kept in this folder, oldest first; made by "
             "`report.py --index results` from their `results.json`. The targets are the "
             "performance issue's, judged within each run (as at the end of its `table.md`): "
             "cells met of cells judged. Compare ratios across runs, not milliseconds: the "
             "machines are shared and their speed drifts between runs.", "",
             "| run | date (UTC) | machine | tree | peak GFLOP/s 1 / 2 t | shareformer fp32 "
             "vs best other | " + " | ".join(f"target {t}" for t in range(1, 6)) +
             " | target 2, bf16 products |",
             "|---|---|---|---|---|---|" + "---|" * 6]
    for name, r in runs:
        v, peak = r["versions"], r["peak_gflops"]
        pk = " / ".join(f"{peak[t]['gflops']:.0f}" if t in peak else "-" for t in ("1", "2"))
        checks = target_checks(r)
        speedups = [margin for _, margin, _ in checks[1]]
        if speedups:
            fastest = sum(1 for x in speedups if x >= 1.0)
            vs = (f"fastest in {fastest} of {len(speedups)} cells, "
                  f"{min(speedups):.2f}-{max(speedups):.2f}x")
        else:
            vs = "not run"
        cells = [checks[t] for t in range(1, 6)] + [target_checks(r, "shareformer-bf16dot")[2]]
        met = [f"{sum(1 for _, m, _ in c if m >= 1.0)} of {len(c)}" if c else "-" for c in cells]
        quick = " (quick)" if r.get("quick") else ""
        lines.append(f"| [{name}]({name}/table.md){quick} | {r['date'][:16].replace('T', ' ')} | "
                     f"{v.get('cpu')} | {v.get('git')} | {pk} | {vs} | " + " | ".join(met) + " |")
    lines += ["", "Targets: " + "; ".join(f"{t}: {TARGET_TEXT[t]}" for t in range(1, 6)) + ". "
              "The last column judges target 2 on `--weights bf16dot` (bfloat16 products with "
              "float sums; not fp32, so it counts in no other column), where a run has it.", ""]
    return "\n".join(lines)


if __name__ == "__main__":
    if len(sys.argv) == 3 and sys.argv[1] == "--index":
        with open(os.path.join(sys.argv[2], "README.md"), "w") as f:
            f.write(index_md(sys.argv[2]))
        sys.exit(0)
    d = sys.argv[1]
    with open(os.path.join(d, "results.json")) as f:
        write_all(json.load(f), d)
