"""Unit tests of the peer report's arithmetic: the FLOP and byte counts, and how report.py judges
the performance issue's targets. Every expected figure is worked out by hand in the comments
from the synthetic run below, not taken from report.py's output.

Run: cd benchmarks/peers && python3 -m unittest -v test_report   (ctest runs it as peers_report)
Needs only the Python standard library.
"""
import unittest

import report
import workloads


def cell(model, policy, batch, seq, threads, flops, medians, rounds=None):
    """One cell of a results.json: `medians` {peer: median ms}, `rounds` {peer: [ms per round]}."""
    rounds = rounds or {}
    return {"model": model, "policy": policy, "batch": batch, "seq": seq, "threads": threads,
            "tokens": batch * seq, "flops": flops,
            "peers": {p: {"summary": {"median_ms": ms, "round_min_ms": ms, "round_max_ms": ms},
                          "rounds": [{"round": r, "median_ms": x}
                                     for r, x in enumerate(rounds.get(p, []))]}
                      for p, ms in medians.items()}}


# Peaks 200 GFLOP/s on 1 thread and 400 on 2; round numbers of FLOPs so that rates are exact.
RUN = {
    "peak_gflops": {"1": {"gflops": 200.0}, "2": {"gflops": 400.0}},
    "read_gbs_block": {"bert-base": {"1": {"read_gbs": 50.0}}},
    "peers": {"pytorch": {}, "onnxruntime": {}, "shareformer": {}, "shareformer-bf16": {}},
    "cells": [
        # Shared 1 x 16, 1 thread: best other peer ONNX Runtime 25 ms against 10 ms, 2.5x; per
        # round 25/10 = 2.5 and 24/12 = 2.0. The bf16 peer is faster still, but is not an "other
        # fp32 peer" and must not count.
        cell("bert-base", "all", 1, 16, 1, 2e9,
             {"pytorch": 30.0, "onnxruntime": 25.0, "shareformer": 10.0, "shareformer-bf16": 5.0},
             {"pytorch": [30.0, 30.0], "onnxruntime": [25.0, 24.0], "shareformer": [10.0, 12.0]}),
        # Same on 2 threads: 12 / 8 = 1.5x, below the 2x a shared small cell needs.
        cell("bert-base", "all", 1, 16, 2, 2e9, {"onnxruntime": 12.0, "shareformer": 8.0}),
        # Shared 1 x 128 on 1 thread (70 ms) and on 2: 50 / 40 = 1.25x, time ratio 0.8 <= 0.85.
        cell("bert-base", "all", 1, 128, 1, 1e10, {"onnxruntime": 80.0, "shareformer": 70.0}),
        cell("bert-base", "all", 1, 128, 2, 1e10, {"onnxruntime": 50.0, "shareformer": 40.0}),
        # Unshared 8 x 128 (1024 tokens): 1.7e11 FLOPs in 1000 ms = 170 GFLOP/s = 85.0 % of 200
        # (exactly the target) on 1 thread; in 520 ms = 326.9 GFLOP/s = 81.7 % of 400 on 2.
        cell("bert-base", "none", 8, 128, 1, 1.7e11, {"onnxruntime": 1100.0, "shareformer": 1000.0}),
        cell("bert-base", "none", 8, 128, 2, 1.7e11, {"onnxruntime": 600.0, "shareformer": 520.0}),
    ],
}


def by_name(checks):
    return {name: (margin, text) for name, margin, text in checks}


class Counts(unittest.TestCase):
    def test_flops_of_bert_base_8_by_128(self):
        # Per layer: 2 * 1024 tokens * (4 * 768^2 + 2 * 768 * 3072) = 14,495,514,624 for the
        # projections, 4 * 8 * 128^2 * 768 = 402,653,184 for the attention; times 12 layers.
        # (The CLI's bench prints the same count: 178.78 GFLOP per forward.)
        self.assertEqual(workloads.flops("bert-base", 8, 128), 178_778_013_696)

    def test_weight_bytes(self):
        # One bert-base block: 4 * 768^2 + 2 * 768 * 3072 = 7,077,888 floats = 28,311,552 bytes.
        self.assertEqual(workloads.block_matrix_bytes("bert-base"), 28_311_552)
        self.assertEqual(workloads.weight_matrix_bytes("bert-base"), 12 * 28_311_552)
        # seed: 4 * 512^2 + 2 * 512 * 2048 = 3,145,728 floats.
        self.assertEqual(workloads.block_matrix_bytes("seed"), 4 * 3_145_728)


class Targets(unittest.TestCase):
    def setUp(self):
        self.checks = report.target_checks(RUN)

    def test_target1_speedups_against_the_best_other_fp32_peer(self):
        t1 = by_name(self.checks[1])
        margin, text = t1["bert-base shared 1 x 16, 1 t"]
        self.assertAlmostEqual(margin, 2.5)
        self.assertEqual(text, "2.50x (rounds 2.00-2.50x)")
        self.assertAlmostEqual(t1["bert-base unshared 8 x 128, 2 t"][0], 600 / 520)
        self.assertEqual(len(t1), 6)

    def test_target2_needs_2x_shared_and_says_what_it_would_take(self):
        t2 = by_name(self.checks[2])
        self.assertEqual(set(t2), {"bert-base shared 1 x 16, 1 t", "bert-base shared 1 x 16, 2 t"})
        margin, text = t2["bert-base shared 1 x 16, 1 t"]
        self.assertAlmostEqual(margin, 1.25)  # 2.5x of the 2x needed
        # 2x means 12.5 ms: 2e9 FLOPs / 12.5 ms = 160 GFLOP/s = 80 % of 200; the block's weights
        # 12 times, 339,738,624 bytes in 12.5 ms = 27.18 GB/s = 54 % of the 50 GB/s read rate.
        self.assertEqual(text, "2.50x (rounds 2.00-2.50x) (needs 2.0x = 80 % of peak, its "
                               "block's weights 12 times at 27.2 GB/s = 54 % of their read rate)")
        margin, text = t2["bert-base shared 1 x 16, 2 t"]
        self.assertAlmostEqual(margin, 0.75)  # 1.5x of 2x
        # 6 ms: 333.3 GFLOP/s = 83 % of 400; no read rate measured on 2 threads, so no rate text.
        self.assertEqual(text, "1.50x (needs 2.0x = 83 % of peak)")

    def test_target3_time_ratio_on_two_threads(self):
        t3 = by_name(self.checks[3])
        self.assertEqual(list(t3), ["bert-base shared 1 x 128, 2 t"])
        margin, text = t3["bert-base shared 1 x 128, 2 t"]
        self.assertAlmostEqual(margin, 0.85 * 1.25)  # met: 0.8 <= 0.85
        self.assertEqual(text, "0.800")

    def test_target4_fraction_of_peak(self):
        t4 = by_name(self.checks[4])
        self.assertAlmostEqual(t4["bert-base unshared 8 x 128, 1 t"][0], 1.0)
        self.assertEqual(t4["bert-base unshared 8 x 128, 1 t"][1], "85.0 %")
        pct = 100 * 1.7e11 / 0.520 / 1e9 / 400  # 81.73 %
        self.assertAlmostEqual(t4["bert-base unshared 8 x 128, 2 t"][0], pct / 85)
        self.assertEqual(t4["bert-base unshared 8 x 128, 2 t"][1], "81.7 %")

    def test_target5_thread_scaling(self):
        t5 = by_name(self.checks[5])
        # 1 x 16: below 128 tokens, 2 threads need only not be slower: 10 / 8 = 1.25x.
        self.assertAlmostEqual(t5["bert-base shared 1 x 16"][0], 1.25)
        self.assertEqual(t5["bert-base shared 1 x 16"][1], "1.25x (needs 1.0x)")
        # 8 x 128: 1000 / 520 = 1.923x of the 1.8x needed.
        self.assertAlmostEqual(t5["bert-base unshared 8 x 128"][0], 1000 / 520 / 1.8)
        # 1 x 128: from 128 tokens on, 1.8x is needed; 70 / 40 = 1.75x misses it.
        self.assertAlmostEqual(t5["bert-base shared 1 x 128"][0], 1.75 / 1.8)
        self.assertEqual(t5["bert-base shared 1 x 128"][1], "1.75x (needs 1.8x)")

    def test_target_rows_count_met_and_name_the_misses(self):
        row = report.target_row("4", self.checks[4])
        self.assertEqual(row, "| 4 | 1 of 2 | bert-base unshared 8 x 128, 2 t: 81.7 % | "
                              "bert-base unshared 8 x 128, 2 t: 81.7 % |")
        self.assertIn("| 2 of 3 | bert-base shared 1 x 128: 1.75x (needs 1.8x) |",
                      report.target_row("5", self.checks[5]))

    def test_a_bf16_peer_is_judged_only_when_asked(self):
        t1 = by_name(report.target_checks(RUN, "shareformer-bf16")[1])
        # Only the cell the bf16 peer ran: 25 / 5 = 5x.
        self.assertEqual(list(t1), ["bert-base shared 1 x 16, 1 t"])
        self.assertAlmostEqual(t1["bert-base shared 1 x 16, 1 t"][0], 5.0)


class PlotAxis(unittest.TestCase):
    def run_with(self, summary):
        """A run with a 100 GFLOP/s peak and one cell of 1e9 FLOPs timed with `summary`."""
        c = cell("bert-base", "all", 1, 16, 1, 1e9, {"shareformer": 0.0})
        c["peers"]["shareformer"]["summary"] = summary
        return {"peak_gflops": {"1": {"gflops": 100.0}}, "peers": {"shareformer": {}},
                "cells": [c]}

    def test_the_peak_sets_the_top_when_every_rate_is_below_it(self):
        # 1e9 FLOPs in 20 ms (fastest round) = 50 GFLOP/s < 100: top = 1.08 x 100.
        run = self.run_with({"median_ms": 25.0, "round_min_ms": 20.0, "round_max_ms": 30.0})
        self.assertAlmostEqual(report.gflops_axis_top(run), 108.0)

    def test_the_fastest_round_sets_it_when_above_the_peak(self):
        # Median 1e9 / 5 ms = 200 GFLOP/s, fastest round 1e9 / 4 ms = 250 (its error bar's top),
        # both above the peak (as bfloat16 products run): top = 1.08 x 250 = 270.
        run = self.run_with({"median_ms": 5.0, "round_min_ms": 4.0, "round_max_ms": 6.0})
        self.assertAlmostEqual(report.gflops_axis_top(run), 270.0)


if __name__ == "__main__":
    unittest.main()
