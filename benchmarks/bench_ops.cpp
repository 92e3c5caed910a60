// SPDX-License-Identifier: MIT
// The ops of a layer on their own: the projection GEMMs, attention, LayerNorm and GELU.
#include "bench_data.hpp"

#include <shareformer/shareformer.hpp>

#include <benchmark/benchmark.h>

#include <map>
#include <utility>
#include <vector>

#if defined(__linux__)
#include <sys/mman.h>
#include <sys/prctl.h>
#endif

namespace sf = shareformer;
using sf::Index;

namespace {

using bench::noise;

// The start of c += a b: c itself.
sf::ops::GemmStart<float> onto(sf::RowMatrix<float>& c) {
  return {c.data(), c.outerStride(), nullptr};
}

// range: tokens, in, out, threads. FLOP/s counts 2 * tokens * in * out.
void Gemm(benchmark::State& state) {
  const Index t = state.range(0), k = state.range(1), n = state.range(2);
  const int threads = static_cast<int>(state.range(3));
  const auto a = noise(t, k, 1), b = noise(k, n, 2);
  sf::RowMatrix<float> c(t, n);
  sf::ops::GemmScratch<float> scratch;
  for (auto _ : state) {
    c.setZero();
    sf::ops::gemm_accumulate<float>(a, b, c, threads, scratch);
    benchmark::DoNotOptimize(c.data());
  }
  state.counters["FLOP/s"] = benchmark::Counter(2.0 * static_cast<double>(t * k * n),
                                                benchmark::Counter::kIsIterationInvariantRate);
}

// range: tokens, in, out, threads, route. The routes a product can take: 0 = the small_gemm
// kernel on float weights, 1 = Eigen's GEBP entry point (OpenBLAS's sgemm in a
// SHAREFORMER_USE_BLAS build), 2 = the small_gemm kernel on bfloat16 weights (widened as read),
// 3 = the kernel on packed float weights (PackedMatrix), 4 = on packed bfloat16 weights. One weight
// matrix, in cache after the first iteration (GemmStream streams them). Picks
// SHAREFORMER_SMALL_GEMM_MAX_ROWS (3 vs 1) and SHAREFORMER_BF16_GEMM_MAX_ROWS (4 vs 3).
void GemmRoute(benchmark::State& state) {
  const Index t = state.range(0), k = state.range(1), n = state.range(2);
  const int threads = static_cast<int>(state.range(3));
  const auto route = state.range(4);
  const auto a = noise(t, k, 1), b = noise(k, n, 2);
  const sf::RowMatrix<Eigen::bfloat16> b16 = b.cast<Eigen::bfloat16>();
  const sf::ops::PackedMatrix<float> packed(b);
  const sf::ops::PackedMatrix<float, Eigen::bfloat16> packed16(b);
  sf::RowMatrix<float> c(t, n);
  sf::ops::GemmScratch<float> scratch;
  for (auto _ : state) {
    c.setZero();
    if (route == 1)
      sf::ops::detail::gemm_blocked_path<float>(a, b, c, threads, scratch, sf::ops::NoEpilogue{});
    else if (route == 2)
      sf::ops::gemm_accumulate<float>(a, b16, c, threads, scratch);
    else if (route == 3)
      sf::ops::gemm_accumulate<float>(a, packed, c, threads, scratch);
    else if (route == 4)
      sf::ops::gemm_accumulate<float>(a, packed16, c, threads, scratch);
    else
      sf::ops::detail::gemm_small_path<float>(a, b, onto(c), c, threads, sf::ops::NoEpilogue{});
    benchmark::DoNotOptimize(c.data());
  }
  state.counters["FLOP/s"] = benchmark::Counter(2.0 * static_cast<double>(t * k * n),
                                                benchmark::Counter::kIsIterationInvariantRate);
}

// Twelve different (k, n) weight matrices, made once per shape and kept: 113 MiB for bert-base's
// FFN, as in an unshared 12-layer stack; more than a 32 MiB L3 (the AMD machine's), though a
// larger one (the Intel machine's 260 MiB, shared with other tenants) may hold part of them.
struct Streamed {
  std::vector<sf::RowMatrix<float>> plain;
  std::vector<sf::ops::PackedMatrix<float>> packed;
  std::vector<sf::ops::PackedMatrix<float, Eigen::bfloat16>> packed16;
};
const Streamed& streamed(Index k, Index n) {
  static std::map<std::pair<Index, Index>, Streamed> cache;
  Streamed& s = cache[{k, n}];
  for (unsigned i = static_cast<unsigned>(s.plain.size()); i < 12; ++i) {
    s.plain.push_back(noise(k, n, 100 + i));
    s.packed.emplace_back(s.plain.back());
    s.packed16.emplace_back(s.plain.back());
  }
  return s;
}

// Route 5's weights: the same packed float matrices as route 3's, but in 4 KiB pages: transparent
// huge pages are switched off for the process (prctl) while they are packed, and the advice to use
// them is then withdrawn (else khugepaged merges their pages into huge ones within minutes), so
// that route 3 against route 5 measures what HugePageAllocator's huge pages give. Empty off Linux.
const std::vector<sf::ops::PackedMatrix<float>>& small_pages(Index k, Index n) {
  static std::map<std::pair<Index, Index>, std::vector<sf::ops::PackedMatrix<float>>> cache;
  auto& packed = cache[{k, n}];
#if defined(__linux__)
  if (packed.empty()) {
    prctl(PR_SET_THP_DISABLE, 1, 0, 0, 0);
    for (const auto& b : streamed(k, n).plain) {
      packed.emplace_back(b);
      madvise(const_cast<float*>(packed.back().data()), packed.back().bytes(), MADV_NOHUGEPAGE);
    }
    prctl(PR_SET_THP_DISABLE, 0, 0, 0, 0);
  }
#endif
  return packed;
}

// range: tokens, in, out, threads, route. Each iteration multiplies by the next of twelve weight
// matrices, so the weights stream from memory as in an unshared stack (GemmRoute's one matrix
// stays in cache). Routes: 0 = small_gemm on the row-major float weights, 2 = the same on
// row-major bfloat16, 3 = packed float (PackedMatrix), 4 = packed bfloat16, 5 = packed float in
// 4 KiB pages (see small_pages; run with --benchmark_enable_random_interleaving against route 3).
// weight_bytes/s, the weights' bytes read per second, is to be set against StreamRead's for the
// same shape and threads.
void GemmStream(benchmark::State& state) {
  const Index t = state.range(0), k = state.range(1), n = state.range(2);
  const int threads = static_cast<int>(state.range(3));
  const auto route = state.range(4);
  const Streamed& w = streamed(k, n);
  const auto& packed = route == 5 ? small_pages(k, n) : w.packed;
  if (packed.empty()) {
    state.SkipWithError("4 KiB-page weights need Linux (prctl)");
    return;
  }
  std::vector<sf::RowMatrix<Eigen::bfloat16>> b16;
  if (route == 2)
    for (const auto& b : w.plain) b16.emplace_back(b.cast<Eigen::bfloat16>());
  const auto a = noise(t, k, 1);
  sf::RowMatrix<float> c(t, n);
  sf::ops::GemmScratch<float> scratch;
  std::size_t next = 0;
  for (auto _ : state) {
    c.setZero();
    if (route == 2)
      sf::ops::gemm_accumulate<float>(a, b16[next], c, threads, scratch);
    else if (route == 3 || route == 5)
      sf::ops::gemm_accumulate<float>(a, packed[next], c, threads, scratch);
    else if (route == 4)
      sf::ops::gemm_accumulate<float>(a, w.packed16[next], c, threads, scratch);
    else
      sf::ops::detail::gemm_small_path<float>(a, w.plain[next], onto(c), c, threads,
                                              sf::ops::NoEpilogue{});
    benchmark::DoNotOptimize(c.data());
    next = (next + 1) % w.plain.size();
  }
  state.counters["FLOP/s"] = benchmark::Counter(2.0 * static_cast<double>(t * k * n),
                                                benchmark::Counter::kIsIterationInvariantRate);
  // Bytes of one weight matrix: bfloat16 (2) on routes 2 and 4, float (4) on the others.
  const double bytes = static_cast<double>(k * n) * (route == 2 || route == 4 ? 2.0 : 4.0);
  state.counters["weight_bytes/s"] =
      benchmark::Counter(bytes, benchmark::Counter::kIsIterationInvariantRate);
}

// The bound GemmStream's weight_bytes/s is to be read against: the same twelve packed float
// matrices, each summed in turn with Eigen's vectorised sum (split over the threads), which does
// nothing but read them. range: in, out, threads.
void StreamRead(benchmark::State& state) {
  const Index k = state.range(0), n = state.range(1);
  const int threads = static_cast<int>(state.range(2));
  const Streamed& w = streamed(k, n);
  const Index size = k * n;
  std::vector<float> sums(static_cast<std::size_t>(threads));
  std::size_t next = 0;
  for (auto _ : state) {
    const float* data = w.packed[next].data();
    sf::detail::parallel_chunks(size, 4096, threads, [&](Index begin, Index end, int t) {
      sums[static_cast<std::size_t>(t)] +=
          Eigen::Map<const Eigen::ArrayXf>(data + begin, end - begin).sum();
    });
    benchmark::DoNotOptimize(sums.data());
    next = (next + 1) % w.packed.size();
  }
  state.counters["weight_bytes/s"] = benchmark::Counter(
      static_cast<double>(w.packed[0].bytes()), benchmark::Counter::kIsIterationInvariantRate);
}

// range: batch, seq_len, threads; d 768, 12 heads.
void Attention(benchmark::State& state) {
  const Index batch = state.range(0), s = state.range(1), d = 768, heads = 12;
  const int threads = static_cast<int>(state.range(2));
  const sf::Batch layout = sf::Batch::uniform(batch, s);
  const auto qkv = noise(layout.tokens(), 3 * d, 3);
  sf::RowMatrix<float> ctx(layout.tokens(), d);
  std::vector<sf::RowMatrix<float>> scores;
  for (auto _ : state) {
    sf::ops::attention<float>(qkv, layout, heads, false, ctx, scores, threads);
    benchmark::DoNotOptimize(ctx.data());
  }
  state.counters["FLOP/s"] = benchmark::Counter(4.0 * static_cast<double>(batch * s * s * d),
                                                benchmark::Counter::kIsIterationInvariantRate);
}

// range: tokens, d. In place, so every iteration normalises already-normalised rows: same work.
void LayerNorm(benchmark::State& state) {
  const Index t = state.range(0), d = state.range(1);
  auto x = noise(t, d, 4);
  const sf::RowVector<float> g = sf::RowVector<float>::Ones(d), b = sf::RowVector<float>::Zero(d);
  for (auto _ : state) {
    sf::ops::layer_norm<float>(x, g, b, 1e-12f);
    benchmark::DoNotOptimize(x.data());
  }
  state.counters["elements/s"] =
      benchmark::Counter(static_cast<double>(t * d), benchmark::Counter::kIsIterationInvariantRate);
}

// range: tokens, d_ff.
void Gelu(benchmark::State& state) {
  const Index t = state.range(0), f = state.range(1);
  const auto x0 = noise(t, f, 5);
  sf::RowMatrix<float> x(t, f);
  for (auto _ : state) {
    x = x0;
    sf::ops::activate<float>(sf::Activation::GeluErf, x);
    benchmark::DoNotOptimize(x.data());
  }
  state.counters["elements/s"] =
      benchmark::Counter(static_cast<double>(t * f), benchmark::Counter::kIsIterationInvariantRate);
}

}  // namespace

BENCHMARK(Gemm)
    ->ArgNames({"tokens", "in", "out", "threads"})
    ->ArgsProduct({{16, 128, 1024}, {768}, {2304, 3072}, {1, 2}})
    ->Args({16, 3072, 768, 1})
    ->Args({1024, 3072, 768, 2})
    ->UseRealTime();
BENCHMARK(GemmRoute)
    ->ArgNames({"tokens", "in", "out", "threads", "route"})
    ->ArgsProduct(
        {{16, 64, 128, 256, 512, 1024, 4096}, {768}, {2304, 3072}, {1, 2}, {0, 1, 2, 3, 4}})
    ->ArgsProduct({{16, 64, 128, 256, 512, 1024, 4096}, {3072}, {768}, {1, 2}, {0, 1, 2, 3, 4}})
    // The rest of the products of the peer table's 16- and 32-token cells (packed, as the CLI
    // runs them): bert-base's 768 -> 768 and 32-token products, and the seed model's (d = 512).
    ->ArgsProduct({{16, 32}, {768}, {768}, {1, 2}, {3}})
    ->ArgsProduct({{32}, {768}, {2304, 3072}, {1, 2}, {3}})
    ->ArgsProduct({{32}, {3072}, {768}, {1, 2}, {3}})
    ->ArgsProduct({{16, 32}, {512}, {512, 1536, 2048}, {1, 2}, {3}})
    ->ArgsProduct({{16, 32}, {2048}, {512}, {1, 2}, {3}})
    ->UseRealTime();
BENCHMARK(GemmStream)
    ->ArgNames({"tokens", "in", "out", "threads", "route"})
    ->ArgsProduct({{16, 32, 64, 128}, {768}, {3072}, {1, 2}, {0, 2, 3, 4}})
    ->ArgsProduct({{16, 32, 64, 128}, {3072}, {768}, {1, 2}, {0, 2, 3, 4}})
    ->ArgsProduct({{16, 32, 128}, {768}, {3072}, {1, 2}, {5}})
    ->UseRealTime();
BENCHMARK(StreamRead)
    ->ArgNames({"in", "out", "threads"})
    ->ArgsProduct({{768}, {3072}, {1, 2}})
    ->ArgsProduct({{3072}, {768}, {1, 2}})
    ->UseRealTime();
BENCHMARK(Attention)
    ->ArgNames({"batch", "seq", "threads"})
    ->ArgsProduct({{1, 8}, {16, 128, 512}, {1, 2}})
    ->UseRealTime();
BENCHMARK(LayerNorm)->ArgNames({"tokens", "d"})->Args({16, 768})->Args({1024, 768});
BENCHMARK(Gelu)->ArgNames({"tokens", "d_ff"})->Args({16, 3072})->Args({1024, 3072});

#include "bench_main.hpp"
