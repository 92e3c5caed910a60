"""Unit tests of the peer harness's bookkeeping: the order in which peers take turns, how many
iterations a cell gets, and how a cell's rounds are summarised. Expected values are worked out
by hand in the comments, not taken from harness.py's output.

Run: cd benchmarks/peers && python3 -m unittest -v test_harness   (ctest runs it as peers_harness)
Needs only the Python standard library (harness.py imports torch only in its workers).
"""
import argparse
import unittest

import harness


class PeerOrder(unittest.TestCase):
    PEERS = ["pytorch", "onnxruntime", "shareformer"]

    def test_rotates_by_round_plus_cell(self):
        self.assertEqual(harness.peer_order(self.PEERS, 0, 0), ["pytorch", "onnxruntime", "shareformer"])
        self.assertEqual(harness.peer_order(self.PEERS, 0, 1), ["onnxruntime", "shareformer", "pytorch"])
        self.assertEqual(harness.peer_order(self.PEERS, 1, 1), ["shareformer", "pytorch", "onnxruntime"])
        # 3 + 4 = 7 = 1 (mod 3): the same rotation as round 0, cell 1.
        self.assertEqual(harness.peer_order(self.PEERS, 3, 4), ["onnxruntime", "shareformer", "pytorch"])

    def test_each_peer_takes_each_position_once_over_as_many_rounds_as_peers(self):
        peers = self.PEERS + ["shareformer-bf16", "shareformer-bf16dot"]
        for ci in range(7):
            positions = {p: set() for p in peers}
            for rnd in range(len(peers)):
                order = harness.peer_order(peers, rnd, ci)
                self.assertEqual(sorted(order), sorted(peers))  # a permutation: nobody skipped
                for i, p in enumerate(order):
                    positions[p].add(i)
            for p in peers:
                self.assertEqual(positions[p], set(range(len(peers))), (ci, p))

    def test_does_not_change_its_argument(self):
        peers = list(self.PEERS)
        harness.peer_order(peers, 2, 5)
        self.assertEqual(peers, self.PEERS)


class Iterations(unittest.TestCase):
    @staticmethod
    def args(target_ms=1000.0, gflops=150.0, lo=3, hi=30):
        return argparse.Namespace(target_ms=target_ms, assumed_gflops=gflops, min_iters=lo,
                                  max_iters=hi)

    def test_about_target_ms_of_work(self):
        # 15 GFLOP at 150 GFLOP/s per thread on 1 thread: 100 ms a run, so 10 runs make 1000 ms.
        self.assertEqual(harness.iterations_for(15e9, 1, self.args()), 10)
        # On 2 threads the same work is estimated at 50 ms: 20 runs.
        self.assertEqual(harness.iterations_for(15e9, 2, self.args()), 20)
        # 40 ms a run (6 GFLOP): 1000 / 40 = 25 exactly.
        self.assertEqual(harness.iterations_for(6e9, 1, self.args()), 25)
        # 45 ms a run: 22.2 rounds up to 23.
        self.assertEqual(harness.iterations_for(6.75e9, 1, self.args()), 23)

    def test_clamped(self):
        # 1.2 GFLOP: 8 ms, 125 runs wanted, clamped to 30; 180 GFLOP: 1.2 s, 1 wanted, raised to 3.
        self.assertEqual(harness.iterations_for(1.2e9, 1, self.args()), 30)
        self.assertEqual(harness.iterations_for(180e9, 1, self.args()), 3)


class Summary(unittest.TestCase):
    def test_median_of_round_medians_and_their_range(self):
        rounds = [{"median_ms": 12.0, "min_ms": 11.0}, {"median_ms": 10.0, "min_ms": 9.5},
                  {"median_ms": 30.0, "min_ms": 8.0}]
        s = harness.summarize(rounds)
        # The median of 10, 12, 30 is 12: one slow round moves the range, not the median.
        self.assertEqual(s["median_ms"], 12.0)
        self.assertEqual((s["round_min_ms"], s["round_max_ms"]), (10.0, 30.0))
        self.assertEqual(s["best_ms"], 8.0)
        self.assertEqual(s["rounds"], 3)

    def test_even_count_and_no_per_iteration_minimum(self):
        # A peer that reports only medians (min_ms None): best_ms is None; 4 rounds: the
        # median is the mean of the middle two, (10 + 14) / 2.
        rounds = [{"median_ms": m, "min_ms": None} for m in (16.0, 10.0, 14.0, 8.0)]
        s = harness.summarize(rounds)
        self.assertEqual(s["median_ms"], 12.0)
        self.assertIsNone(s["best_ms"])


if __name__ == "__main__":
    unittest.main()
