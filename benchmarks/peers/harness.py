"""Peer benchmark harness: shareformer vs ONNX Runtime vs PyTorch on the same workloads.

Usually started through run.sh. Run with Debian's /usr/bin/python3 (torch 1.13, matplotlib).
For every round, every cell (model x sharing policy x B x S x threads) is timed by every peer,
the peers' order rotating from cell to cell and round to round, so that slow drifts in the
machine's load hit all of them alike. Writes OUT/results.json, then table.md and the plots
(report.py).
"""
import argparse
import datetime
import json
import math
import os
import platform
import shutil
import statistics
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))
sys.path.insert(0, HERE)

import report  # noqa: E402
from workloads import (FULL_SHAPES, MODELS, POLICIES, QUICK_SHAPES, block_matrix_bytes, flops,  # noqa: E402
                       weight_matrix_bytes)

PEERS = ("pytorch", "onnxruntime", "shareformer", "shareformer-bf16", "shareformer-bf16dot")
# shareformer-bf16: the same CLI with --weights bf16 (weights rounded to bfloat16, streamed as
# bfloat16 by products over at most BF16_MAX_TOKENS tokens; larger ones are the float path, so
# those cells are not run). Not fp32, so never the "best" of a row: reported beside it.
BF16_MAX_TOKENS = 32
# shareformer-bf16dot: --weights bf16dot (bfloat16 products with float sums on AVX512-BF16 dot
# products: weights and activations rounded to bfloat16), every cell. A different precision:
# reported beside the fp32 peers, never a row's best.
VARIANTS = {"shareformer-bf16": ["--weights", "bf16"],
            "shareformer-bf16dot": ["--weights", "bf16dot"]}
# Removed from every peer's environment: this machine sets OPENBLAS_CORETYPE=Haswell, which keeps
# OpenBLAS (PyTorch's BLAS here) off its AVX-512 kernels and halves its speed.
OPENBLAS_VARS = ("OPENBLAS_CORETYPE", "OPENBLAS_L2_SIZE")
DEFAULT_SF_BIN = os.path.join(ROOT, "build", "release", "tools", "shareformer", "shareformer")


def log(msg):
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


class Worker:
    """A long-lived peer process that answers one JSON line per JSON request line."""

    def __init__(self, name, argv, env):
        self.name = name
        self.proc = subprocess.Popen(argv, cwd=HERE, env=env, stdin=subprocess.PIPE,
                                     stdout=subprocess.PIPE, text=True, bufsize=1)

    def ask(self, req):
        self.proc.stdin.write(json.dumps(req) + "\n")
        self.proc.stdin.flush()
        line = self.proc.stdout.readline()
        if not line:
            raise RuntimeError(f"{self.name} exited (status {self.proc.wait()})")
        reply = json.loads(line)
        if "error" in reply:
            raise RuntimeError(f"{self.name}: {reply['error']}")
        return reply

    def close(self):
        if self.proc.poll() is None:
            self.proc.stdin.close()
            try:
                self.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.proc.kill()


class Shareformer:
    """shareformer's CLI, one process per cell and round (it builds its own random weights)."""

    def __init__(self, binary, env, extra=()):
        self.binary = binary
        self.env = env
        self.extra = list(extra)
        help_text = subprocess.run([binary, "bench", "--help"], capture_output=True, text=True,
                                   env=env, timeout=60).stdout
        self.has_warmup = "--warmup" in help_text
        ver = subprocess.run([binary, "--version"], capture_output=True, text=True, env=env,
                             timeout=60)
        self.version = (ver.stdout or ver.stderr).strip() if ver.returncode == 0 else None

    def run(self, model, policy, batch, seq, threads, warmup, iters):
        argv = [self.binary, "bench", "--preset", model, "--batch", str(batch), "--seq-len",
                str(seq), "--threads", str(threads), "--policy", policy, "--iterations",
                str(iters), "--json"] + self.extra
        if self.has_warmup:
            argv += ["--warmup", str(warmup + 1)]  # +1: every run is a cold process
        p = subprocess.run(argv, capture_output=True, text=True, env=self.env, timeout=1800)
        if p.returncode != 0:
            raise RuntimeError(f"shareformer exited {p.returncode}: {p.stderr.strip()[-500:]}")
        results = json.loads(p.stdout)["results"]
        hit = [r for r in results if r.get("policy") == policy and r.get("batch") == batch
               and r.get("seq_len") == seq] or results
        r = hit[0]
        out = {"median_ms": r["median_ms"], "min_ms": r.get("min_ms"),
               "reported_gflops": r.get("gflops"), "argv": argv[1:]}
        for key in ("times_ms", "max_ms", "flops_per_forward"):
            if key in r:
                out[key] = r[key]
        return out


def peak_exe():
    """peak.cpp, built when missing or older than its source."""
    src = os.path.join(HERE, "peak.cpp")
    exe = os.path.join(HERE, "build", "peak")
    if not os.path.exists(exe) or os.path.getmtime(exe) < os.path.getmtime(src):
        os.makedirs(os.path.dirname(exe), exist_ok=True)
        cxx = os.environ.get("CXX", "g++")
        subprocess.run([cxx, "-O2", "-march=native", "-pthread", src, "-o", exe], check=True)
    return exe


def measure_peak(threads_list, seconds, repeats, read_bytes=0):
    """peak.cpp's JSON per thread count: the FMA peak, or with read_bytes the read rate of a
    buffer of that size."""
    exe = peak_exe()
    peak = {}
    for t in threads_list:
        cmd = [exe, str(t), str(seconds), str(repeats)] + ([str(read_bytes)] if read_bytes else [])
        p = subprocess.run(cmd, capture_output=True, text=True, check=True)
        peak[str(t)] = json.loads(p.stdout)
    return peak


def wait_quiet(max_load, max_wait):
    """Waits until the 1-minute load average drops below max_load (0: no wait); returns the
    seconds waited."""
    t0 = time.time()
    if max_load <= 0:
        return 0.0
    while os.getloadavg()[0] > max_load and time.time() - t0 < max_wait:
        time.sleep(5)
    waited = time.time() - t0
    if waited > 1:
        log(f"waited {waited:.0f} s for the load average ({os.getloadavg()[0]:.2f})")
    return waited


def iterations_for(cell_flops, threads, args):
    """Timed iterations per cell and round: about args.target_ms of work at an assumed
    args.assumed_gflops per thread, clamped to [min_iters, max_iters]; the same for every peer."""
    est_ms = cell_flops / (args.assumed_gflops * 1e9 * threads) * 1e3
    return max(args.min_iters, min(args.max_iters, math.ceil(args.target_ms / est_ms)))


def cpu_model():
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor()


def git_rev():
    try:
        rev = subprocess.run(["git", "-C", ROOT, "rev-parse", "--short", "HEAD"],
                             capture_output=True, text=True).stdout.strip()
        # Kept runs (results/) are not the code being measured: a run made before the last one
        # was committed is still a run of a clean tree.
        dirty = subprocess.run(["git", "-C", ROOT, "status", "--porcelain", "--", ".",
                                ":(exclude)benchmarks/peers/results"],
                               capture_output=True, text=True).stdout.strip()
        return rev + ("-dirty" if dirty else "")
    except OSError:
        return None


def peer_order(peers, rnd, ci):
    """The order in which the peers time cell number ci in round rnd: the list rotated by
    rnd + ci, so that over len(peers) consecutive rounds (or cells) each peer runs once in each
    position, and no peer always runs right after another's warm caches or its heat."""
    k = (rnd + ci) % len(peers)
    return peers[k:] + peers[:k]


def summarize(rounds):
    """Cell summary from per-round records: the median of the per-round medians, and their
    min and max as the spread (the same for every peer, whether or not it reports
    per-iteration times)."""
    meds = [r["median_ms"] for r in rounds]
    mins = [r["min_ms"] for r in rounds if r.get("min_ms") is not None]
    return {"median_ms": statistics.median(meds), "round_min_ms": min(meds),
            "round_max_ms": max(meds), "best_ms": min(mins) if mins else None,
            "rounds": len(meds)}


def main():
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true",
                    help="few shapes, 2 rounds, shorter cells: a smoke test")
    ap.add_argument("--rounds", type=int, help="rounds of interleaved runs (default 5; quick 2)")
    ap.add_argument("--threads", default="1,2", help="thread counts (default 1,2)")
    ap.add_argument("--peers", default=",".join(PEERS[:3]),
                    help="subset of " + ",".join(PEERS) + " (default: the first three)")
    ap.add_argument("--models", default=",".join(MODELS), help="subset of " + ",".join(MODELS))
    ap.add_argument("--shapes", help="BxS list overriding the workloads', e.g. 1x16,8x128")
    ap.add_argument("--warmup", type=int, default=1, help="untimed runs per cell and round")
    ap.add_argument("--target-ms", type=float, help="timed work per cell and round "
                    "(default 1000; quick 300)")
    ap.add_argument("--assumed-gflops", type=float, default=150.0,
                    help="per-thread rate used only to size the iteration counts")
    ap.add_argument("--min-iters", type=int, default=3)
    ap.add_argument("--max-iters", type=int, help="default 30; quick 10")
    ap.add_argument("--shareformer-bin", default=DEFAULT_SF_BIN,
                    help="shareformer CLI (skipped with a note if missing)")
    ap.add_argument("--models-dir", default=os.path.join(HERE, "models"),
                    help="where the ONNX files are exported to (and reused from)")
    ap.add_argument("--keep-openblas-env", action="store_true",
                    help="do not remove OPENBLAS_CORETYPE / OPENBLAS_L2_SIZE (slow PyTorch)")
    ap.add_argument("--pytorch-openblas-coretype", metavar="CORE",
                    help="OPENBLAS_CORETYPE for the PyTorch worker only (e.g. SkylakeX), for a CPU "
                         "that Debian's OpenBLAS 0.3.21 does not recognise and runs with its SSE3 "
                         "(Prescott) kernels: OPENBLAS_VERBOSE=2 prints the core it picked")
    ap.add_argument("--max-load", type=float, default=0.0,
                    help="before each round, wait (up to --max-wait s) until the 1-minute load "
                         "average is below this (default 0: do not wait)")
    ap.add_argument("--max-wait", type=float, default=300.0)
    ap.add_argument("--peak-seconds", type=float, default=0.5)
    ap.add_argument("--out", help="output folder (default results/<date>)")
    args = ap.parse_args()
    if args.rounds is None:
        args.rounds = 2 if args.quick else 5
    if args.target_ms is None:
        args.target_ms = 300.0 if args.quick else 1000.0
    if args.max_iters is None:
        args.max_iters = 10 if args.quick else 30
    threads_list = [int(t) for t in args.threads.split(",")]
    peers = [p for p in args.peers.split(",") if p]
    for p in peers:
        if p not in PEERS:
            ap.error(f"unknown peer {p}")
    models = [m for m in args.models.split(",") if m]
    shapes = QUICK_SHAPES if args.quick else FULL_SHAPES
    if args.shapes:
        custom = [tuple(int(v) for v in s.split("x")) for s in args.shapes.split(",")]
        shapes = {m: custom for m in models}
    out_dir = args.out or os.path.join(HERE, "results", datetime.date.today().isoformat())
    os.makedirs(out_dir, exist_ok=True)

    started = time.time()
    env = dict(os.environ)
    removed = {}
    if not args.keep_openblas_env:
        for v in OPENBLAS_VARS:
            if v in env:
                removed[v] = env.pop(v)
    notes = []
    torch_env = {}
    if args.pytorch_openblas_coretype:
        torch_env["OPENBLAS_CORETYPE"] = args.pytorch_openblas_coretype
        notes.append(f"PyTorch ran with `OPENBLAS_CORETYPE={args.pytorch_openblas_coretype}` "
                     "(--pytorch-openblas-coretype): OpenBLAS did not recognise this CPU.")

    # Peers available?
    sf = None
    # The same CLI with other --weights choices, as peers of their own.
    variants = {}
    for name, flags in VARIANTS.items():
        if name in peers:
            if os.access(args.shareformer_bin, os.X_OK):
                variants[name] = Shareformer(args.shareformer_bin, env, flags)
            else:
                peers.remove(name)
    if "shareformer" in peers:
        if os.access(args.shareformer_bin, os.X_OK):
            try:
                sf = Shareformer(args.shareformer_bin, env)
            except (OSError, subprocess.SubprocessError) as e:
                notes.append(f"shareformer skipped: {args.shareformer_bin} failed: {e}")
        else:
            notes.append(f"shareformer skipped: no CLI at {os.path.relpath(args.shareformer_bin, ROOT)}"
                         " (build it with cmake --preset release && cmake --build --preset release,"
                         " or pass --shareformer-bin)")
        if sf is None:
            peers.remove("shareformer")
            log(notes[-1])
    onnx_manifest = None
    if "onnxruntime" in peers:
        if not os.path.isdir(os.path.join(HERE, "node_modules", "onnxruntime-node")):
            notes.append("onnxruntime skipped: node_modules/onnxruntime-node missing (run.sh runs npm ci)")
            peers.remove("onnxruntime")
            log(notes[-1])
        else:
            log("exporting ONNX models (reused when present)")
            subprocess.run([sys.executable, os.path.join(HERE, "export_onnx.py"), args.models_dir],
                           check=True, env=env)
            with open(os.path.join(args.models_dir, "manifest.json")) as f:
                onnx_manifest = json.load(f)

    log("measuring the FMA peak")
    peak = measure_peak(threads_list, args.peak_seconds, 5)
    log("peak: " + ", ".join(f"{t} thread(s) {p['gflops']:.0f} GFLOP/s" for t, p in peak.items()))
    # How fast the weights of each unshared stack in the run can come from memory at all, and
    # one block's, which a shared stack reads once per layer, from the caches.
    read, read_block = {}, {}
    for rates, nbytes, what in ((read, weight_matrix_bytes, "unshared"),
                                (read_block, block_matrix_bytes, "block")):
        for m in models:
            rates[m] = measure_peak(threads_list, args.peak_seconds, 5, nbytes(m))
            log(f"read rate of {m}'s {what} weight matrices ({nbytes(m) / 2**20:.0f} MiB): "
                + ", ".join(f"{t} thread(s) {p['read_gbs']:.1f} GB/s" for t, p in rates[m].items()))

    workers = {}
    for t in threads_list:
        if "pytorch" in peers:
            wenv = dict(env, OMP_WAIT_POLICY="PASSIVE", OMP_NUM_THREADS=str(t),
                        OPENBLAS_NUM_THREADS=str(t), **torch_env)
            workers[("pytorch", t)] = Worker(f"pytorch/{t}", [sys.executable, "torch_worker.py",
                                                               str(t)], wenv)
        if "onnxruntime" in peers:
            node = shutil.which("node") or "node"
            workers[("onnxruntime", t)] = Worker(f"onnxruntime/{t}",
                                                 [node, "ort_worker.js", args.models_dir, str(t)],
                                                 env)
    versions = {"python": platform.python_version(), "cpu": cpu_model(),
                "cpus": os.cpu_count(), "kernel": platform.release(), "git": git_rev()}
    for (peer, t), w in workers.items():
        if t == threads_list[0]:
            info = w.ask({"cmd": "info"})
            versions[peer] = info.get("torch") or info.get("onnxruntime", {}).get("node")
            if peer == "onnxruntime":
                versions["node"] = info["node"]
                versions["onnxruntime_session_options"] = info["sessionOptions"]
    if sf is not None:
        versions["shareformer"] = sf.version or os.path.relpath(args.shareformer_bin, ROOT)

    cells = []
    for model in models:
        for batch, seq in shapes[model]:
            for policy in POLICIES:
                for t in threads_list:
                    f = flops(model, batch, seq)
                    cells.append({"model": model, "policy": policy, "batch": batch, "seq": seq,
                                  "tokens": batch * seq, "threads": t, "flops": f,
                                  "iters": iterations_for(f, t, args), "peers": {}})
    log(f"{len(cells)} cells x {len(peers)} peers x {args.rounds} rounds")
    load = []
    errors = []
    for rnd in range(args.rounds):
        waited = wait_quiet(args.max_load, args.max_wait)
        load.append({"round": rnd, "before": os.getloadavg(), "waited_s": waited})
        t_round = time.time()
        for ci, cell in enumerate(cells):
            order = peer_order(peers, rnd, ci)
            for peer in order:
                if peer == "shareformer-bf16" and cell["tokens"] > BF16_MAX_TOKENS:
                    continue
                rec = cell["peers"].setdefault(peer, {"rounds": []})
                try:
                    if peer in variants:
                        r = variants[peer].run(cell["model"], cell["policy"], cell["batch"],
                                               cell["seq"], cell["threads"], args.warmup,
                                               cell["iters"])
                    elif peer == "shareformer":
                        r = sf.run(cell["model"], cell["policy"], cell["batch"], cell["seq"],
                                   cell["threads"], args.warmup, cell["iters"])
                    else:
                        r = workers[(peer, cell["threads"])].ask(
                            {"cmd": "run", "model": cell["model"], "policy": cell["policy"],
                             "batch": cell["batch"], "seq": cell["seq"],
                             "warmup": args.warmup, "iters": cell["iters"]})
                        if "session" in r:
                            rec["session"] = r.pop("session")
                        ts = r["times_ms"]
                        r.update(median_ms=statistics.median(ts), min_ms=min(ts), max_ms=max(ts))
                except (RuntimeError, OSError, subprocess.SubprocessError, ValueError,
                        KeyError) as e:
                    msg = f"{peer} {cell['model']}/{cell['policy']} {cell['batch']}x{cell['seq']}" \
                          f" t={cell['threads']} round {rnd}: {e}"
                    log("ERROR " + msg)
                    errors.append(msg)
                    continue
                r["round"] = rnd
                r["order"] = order.index(peer)
                rec["rounds"].append(r)
        load[-1]["after"] = os.getloadavg()
        load[-1]["seconds"] = time.time() - t_round
        log(f"round {rnd + 1}/{args.rounds} done in {time.time() - t_round:.0f} s, "
            f"load {load[-1]['after'][0]:.2f}")
    for w in workers.values():
        w.close()

    for cell in cells:
        for peer, rec in cell["peers"].items():
            if rec["rounds"]:
                rec["summary"] = summarize(rec["rounds"])
    results = {
        "date": datetime.datetime.now().astimezone().isoformat(timespec="seconds"),
        "quick": args.quick,
        "settings": {k: v for k, v in vars(args).items()},
        "peers": peers,
        "versions": versions,
        "environment": {
            "removed_from_peers_env": removed,
            "pytorch_worker_env": {"OMP_WAIT_POLICY": "PASSIVE", "OMP_NUM_THREADS": "threads",
                                   "OPENBLAS_NUM_THREADS": "threads",
                                   "torch.set_num_threads": "threads", **torch_env},
        },
        "peak_gflops": peak,
        "read_gbs": read,
        "read_gbs_block": read_block,
        "onnx_models": onnx_manifest,
        "load": load,
        "notes": notes,
        "errors": errors,
        "elapsed_s": time.time() - started,
        "cells": cells,
    }
    path = os.path.join(out_dir, "results.json")
    with open(path, "w") as f:
        json.dump(results, f, indent=1)
    log(f"wrote {path} ({results['elapsed_s']:.0f} s)")
    report.write_all(results, out_dir)
    return 1 if errors else 0


if __name__ == "__main__":
    sys.exit(main())
