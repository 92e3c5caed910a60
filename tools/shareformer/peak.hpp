// SPDX-License-Identifier: MIT
// `shareformer bench --measure-peak`: the multiply-add peak of this build's vectors, measured.
#pragma once

#include <shareformer/core/parallel.hpp>
#include <shareformer/ops/small_gemm.hpp>

#include <Eigen/Core>
#include <algorithm>
#include <chrono>
#include <vector>

namespace shareformer::cli {

/// A measured peak: the best GFLOP/s of `repeats` runs on `threads` threads, each thread running
/// multiply-adds on vectors of `lanes` floats (Eigen's packet for this build: 16 with AVX-512, 8
/// with AVX, 4 with SSE or NEON) from registers, with no memory traffic.
struct FmaPeak {
  double gflops = 0;
  int threads = 0;
  int lanes = 0;
  int repeats = 0;
};

namespace peak_detail {

using Packet = ops::detail::Packet<float>;
inline constexpr int lanes = ops::detail::packet_size<float>;
/// Independent accumulators: at least the multiply-add latency times the units that issue them
/// (4 x 2 on the CPUs measured), within the vector registers beside the two constants.
inline constexpr int chains = EIGEN_ARCH_DEFAULT_NUMBER_OF_REGISTERS >= 32 ? 16 : 12;

/// steps x chains multiply-adds acc = acc * m + a (pmadd: one FMA where the build has them) on
/// `chains` independent accumulators; returns a value that depends on all of them.
inline float chains_of_fmas(long steps, float seed) {
  namespace ei = Eigen::internal;
  const Packet m = ei::pset1<Packet>(0.999999f), a = ei::pset1<Packet>(1e-7f);
  Packet acc[chains];
  ops::detail::unrolled<chains>([&](auto c) { acc[c] = ei::pset1<Packet>(seed + 0.001f * c); });
  for (long s = 0; s < steps; ++s)
    ops::detail::unrolled<chains>([&](auto c) { acc[c] = ei::pmadd(acc[c], m, a); });
  Packet sum = acc[0];
  ops::detail::unrolled<chains - 1>([&](auto c) { sum = ei::padd(sum, acc[c + 1]); });
  return ei::predux(sum);
}

inline double seconds_since(std::chrono::steady_clock::time_point t0) {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
}

}  // namespace peak_detail

/// Measures the multiply-add peak of `threads` threads (the forward's own OpenMP team): each runs
/// chains_of_fmas for about `seconds`, `repeats` times; 2 FLOPs per lane and multiply-add. The
/// same measurement as benchmarks/peers/peak.cpp, written with Eigen's packets so that it measures
/// whatever vectors this binary was built for: a build without -march=native measures, and runs,
/// SSE2's 4-float vectors on a CPU that has 16.
inline FmaPeak measure_fma_peak(int threads, double seconds = 0.25, int repeats = 3) {
  using Clock = std::chrono::steady_clock;
  volatile float sink = 0;
  long steps = 1 << 14;  // calibrate on this thread: steps for about `seconds`
  for (;;) {
    const auto t0 = Clock::now();
    sink = sink + peak_detail::chains_of_fmas(steps, 1.0f);
    const double dt = peak_detail::seconds_since(t0);
    if (dt >= 0.02) {
      steps = std::max(1L, static_cast<long>(static_cast<double>(steps) * seconds / dt));
      break;
    }
    steps *= 4;
  }
  FmaPeak peak{0, 0, peak_detail::lanes, repeats};
  std::vector<float> out(static_cast<std::size_t>(std::max(threads, 1)));
  for (int r = 0; r < repeats; ++r) {
    int team = 1;
    const auto t0 = Clock::now();
    shareformer::detail::parallel_team(threads, [&](int t, int n) {
      shareformer::detail::barrier();  // start together
      out[static_cast<std::size_t>(t)] =
          peak_detail::chains_of_fmas(steps, 1.0f + 0.01f * static_cast<float>(t));
      if (t == 0) team = n;
    });
    const double dt = peak_detail::seconds_since(t0);
    for (float v : out) sink = sink + v;
    const double flops = 2.0 * peak_detail::lanes * peak_detail::chains *
                         static_cast<double>(steps) * static_cast<double>(team);
    if (flops / dt / 1e9 > peak.gflops) {
      peak.gflops = flops / dt / 1e9;
      peak.threads = team;
    }
  }
  return peak;
}

}  // namespace shareformer::cli
