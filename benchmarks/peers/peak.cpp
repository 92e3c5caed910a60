// Measures this machine's fp32 FMA peak: THREADS threads each run independent chains of vector
// FMAs (AVX-512 where the compiler targets it, else AVX2/FMA) from registers, no memory traffic.
// Where the build has AVX512-BF16, it also measures the same way the peak of vdpbf16ps (bfloat16
// pair products summed in float: 64 FLOPs per instruction on 512 bits, twice an FMA's), the
// instruction of shareformer's --weights bf16dot: whether it pays depends on how many of them the
// CPU issues per cycle.
// With READ_BYTES, it measures instead how fast THREADS threads read a buffer of that many bytes
// from memory: each thread sums its share of the buffer with vector loads, prefetching 16 KiB
// ahead, pass after pass, and nothing else (the rate at which an unshared stack's weights, too
// large for the caches, can reach the cores at best; a forward that computes on them cannot read
// them faster).
// Build: g++ -O2 -march=native -pthread peak.cpp -o peak.
// Run: peak THREADS [SECONDS] [REPEATS] [READ_BYTES].
// Prints {"threads": N, "gflops": best-of-repeats, "all_gflops": [...], "isa": "..."} as JSON,
// with "bf16dot_gflops" and "all_bf16dot_gflops" where measured; with READ_BYTES,
// {"threads": N, "read_bytes": B, "read_gbs": best-of-repeats, "all_read_gbs": [...]}.
#include <immintrin.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <thread>
#include <vector>

#if defined(__AVX512F__)
using vec = __m512;
static const char* kIsa = "avx512";
static inline vec set1(float x) { return _mm512_set1_ps(x); }
static inline vec fma(vec a, vec b, vec c) { return _mm512_fmadd_ps(a, b, c); }
static inline vec add(vec a, vec b) { return _mm512_add_ps(a, b); }
static inline vec load(const float* p) { return _mm512_load_ps(p); }
static inline float sum(vec a) {
  alignas(64) float f[16];
  _mm512_store_ps(f, a);
  float s = 0;
  for (float x : f) s += x;
  return s;
}
#elif defined(__FMA__)
using vec = __m256;
static const char* kIsa = "avx2-fma";
static inline vec set1(float x) { return _mm256_set1_ps(x); }
static inline vec fma(vec a, vec b, vec c) { return _mm256_fmadd_ps(a, b, c); }
static inline vec add(vec a, vec b) { return _mm256_add_ps(a, b); }
static inline vec load(const float* p) { return _mm256_load_ps(p); }
static inline float sum(vec a) {
  alignas(32) float f[8];
  _mm256_store_ps(f, a);
  float s = 0;
  for (float x : f) s += x;
  return s;
}
#else
#error "peak.cpp needs FMA (build with -march=native on an x86-64 CPU with FMA)"
#endif

constexpr int kChains = 16;  // independent accumulators: >= FMA latency x FMA pipes
constexpr int kFloats = sizeof(vec) / sizeof(float);
constexpr long kInner = 1 << 16;

// Runs `blocks` x kInner x kChains steps acc = step(acc) on kChains independent accumulators;
// returns a value that depends on all of them.
template <typename Step>
static float chains(long blocks, float seed, Step step) {
  vec acc[kChains];
  for (int i = 0; i < kChains; ++i) acc[i] = set1(seed + 0.001f * i);
  for (long b = 0; b < blocks; ++b) {
    for (long i = 0; i < kInner; ++i) {
#pragma GCC unroll 16
      for (int c = 0; c < kChains; ++c) acc[c] = step(acc[c]);
    }
  }
  vec t = acc[0];
  for (int i = 1; i < kChains; ++i) t = add(t, acc[i]);
  return sum(t);
}

// FMAs: 2 FLOPs per float lane.
static float kernel(long blocks, float seed) {
  const vec m = set1(0.999999f), a = set1(1e-7f);
  return chains(blocks, seed, [&](vec x) { return fma(x, m, a); });
}

#if defined(__AVX512BF16__) && defined(__AVX512F__)
constexpr bool kHasBf16Dot = true;
// vdpbf16ps: each float lane adds the products of 2 bfloat16 pairs, 4 FLOPs per lane.
static float kernel_bf16dot(long blocks, float seed) {
  const __m512bh a = _mm512_cvtne2ps_pbh(_mm512_set1_ps(1e-7f), _mm512_set1_ps(1e-7f));
  const __m512bh m = _mm512_cvtne2ps_pbh(_mm512_set1_ps(0.5f), _mm512_set1_ps(0.5f));
  return chains(blocks, seed, [&](vec x) { return _mm512_dpbf16_ps(x, a, m); });
}
#else
constexpr bool kHasBf16Dot = false;
static float kernel_bf16dot(long, float) { return 0.0f; }
#endif

// Runs kernel(blocks, seed) on `threads` threads at once, `repeats` times, each time for about
// `seconds`; returns the GFLOP/s of each repeat (flops_per_block FLOPs per block and thread).
template <typename Kernel>
static std::vector<double> measure(Kernel kernel, double flops_per_block, int threads,
                                   double seconds, int repeats) {
  // Calibrate: blocks per thread for about `seconds`.
  auto t0 = std::chrono::steady_clock::now();
  volatile float sink = kernel(8, 1.0f);
  double dt = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  long blocks = static_cast<long>(seconds / (dt / 8)) + 1;
  std::vector<double> all;
  for (int r = 0; r < repeats; ++r) {
    std::vector<std::thread> pool;
    std::vector<float> out(threads);
    auto start = std::chrono::steady_clock::now();
    for (int t = 0; t < threads; ++t)
      pool.emplace_back([&, t] { out[t] = kernel(blocks, 1.0f + t); });
    for (auto& th : pool) th.join();
    double s = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
    for (float v : out) sink = sink + v;
    all.push_back(flops_per_block * blocks * threads / s / 1e9);
  }
  return all;
}

static void print_list(const std::vector<double>& v) {
  for (size_t i = 0; i < v.size(); ++i) std::printf("%s%.1f", i ? ", " : "", v[i]);
}

static double best(const std::vector<double>& v) {
  return v.empty() ? 0.0 : *std::max_element(v.begin(), v.end());
}

// Bytes ahead of the loads that read_sum prefetches (into L2): on the Intel Xeon of 2026-11-29,
// a 324 MiB read ran at 15.1-15.9 GB/s on one core with prefetcht1 8-64 KiB ahead against
// 12.8-14.3 without (3 alternated rounds); 16 KiB was among the best.
constexpr long kReadAhead = 16384;

// Sum of the floats [begin, end) of p, 4 vectors per step (end - begin a multiple of 4 vectors).
static float read_sum(const float* p, long begin, long end) {
  vec a0 = set1(0.0f), a1 = a0, a2 = a0, a3 = a0;
  for (long i = begin; i < end; i += 4 * kFloats) {
    const char* ahead = reinterpret_cast<const char*>(p + i) + kReadAhead;  // may pass the end
    for (long b = 0; b < 4 * static_cast<long>(sizeof(vec)); b += 64)
      _mm_prefetch(ahead + b, _MM_HINT_T1);
    a0 = add(a0, load(p + i));
    a1 = add(a1, load(p + i + kFloats));
    a2 = add(a2, load(p + i + 2 * kFloats));
    a3 = add(a3, load(p + i + 3 * kFloats));
  }
  return sum(add(add(a0, a1), add(a2, a3)));
}

// Read rate of a `bytes` buffer, each of `threads` threads reading its share; returns the GB/s of
// each repeat (as many whole passes as fit in about `seconds`, after one untimed pass).
static std::vector<double> measure_read(long bytes, int threads, double seconds, int repeats) {
  const long step = 4L * kFloats * threads;
  const long n = std::max(step, bytes / static_cast<long>(sizeof(float)) / step * step);
  float* p = static_cast<float*>(std::aligned_alloc(64, n * sizeof(float)));
  if (p == nullptr) return {};
  std::memset(p, 0, n * sizeof(float));
  volatile float sink = 0;
  auto passes = [&](long count) {
    std::vector<std::thread> pool;
    std::vector<float> out(threads);
    for (int t = 0; t < threads; ++t)
      pool.emplace_back([&, t] {
        const long share = n / threads;
        for (long r = 0; r < count; ++r) out[t] += read_sum(p, t * share, (t + 1) * share);
      });
    for (auto& th : pool) th.join();
    for (float v : out) sink = sink + v;
  };
  auto t0 = std::chrono::steady_clock::now();
  passes(1);
  const double one = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  const long count = static_cast<long>(seconds / one) + 1;
  std::vector<double> all;
  for (int r = 0; r < repeats; ++r) {
    auto start = std::chrono::steady_clock::now();
    passes(count);
    const double s =
        std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
    all.push_back(static_cast<double>(n) * sizeof(float) * count / s / 1e9);
  }
  std::free(p);
  return all;
}

int main(int argc, char** argv) {
  const int threads = argc > 1 ? std::atoi(argv[1]) : 1;
  const double seconds = argc > 2 ? std::atof(argv[2]) : 0.5;
  const int repeats = argc > 3 ? std::atoi(argv[3]) : 5;
  const long read_bytes = argc > 4 ? std::atol(argv[4]) : 0;
  if (read_bytes > 0) {
    const std::vector<double> all = measure_read(read_bytes, threads, seconds, repeats);
    std::printf("{\"threads\": %d, \"read_bytes\": %ld, \"read_gbs\": %.2f, \"all_read_gbs\": [",
                threads, read_bytes, best(all));
    print_list(all);
    std::printf("]}\n");
    return all.empty() ? 1 : 0;
  }
  const std::vector<double> all =
      measure(kernel, 2.0 * kFloats * kChains * kInner, threads, seconds, repeats);
  std::printf("{\"threads\": %d, \"gflops\": %.1f, \"isa\": \"%s\", \"all_gflops\": [", threads,
              best(all), kIsa);
  print_list(all);
  std::printf("]");
  if (kHasBf16Dot) {
    // 16 float lanes, each summing 2 products per instruction: 64 FLOPs.
    const std::vector<double> bf16 =
        measure(kernel_bf16dot, 64.0 * kChains * kInner, threads, seconds, repeats);
    std::printf(", \"bf16dot_gflops\": %.1f, \"all_bf16dot_gflops\": [", best(bf16));
    print_list(bf16);
    std::printf("]");
  }
  std::printf("}\n");
  return 0;
}
