// Measures this machine's fp32 FMA peak: THREADS threads each run independent chains of vector
// FMAs (AVX-512 where the compiler targets it, else AVX2/FMA) from registers, no memory traffic.
// Build: g++ -O2 -march=native -pthread peak.cpp -o peak. Run: peak THREADS [SECONDS] [REPEATS].
// Prints {"threads": N, "gflops": best-of-repeats, "all_gflops": [...], "isa": "..."} as JSON.
#include <immintrin.h>

#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <thread>
#include <vector>

#if defined(__AVX512F__)
using vec = __m512;
static const char* kIsa = "avx512";
static inline vec set1(float x) { return _mm512_set1_ps(x); }
static inline vec fma(vec a, vec b, vec c) { return _mm512_fmadd_ps(a, b, c); }
static inline vec add(vec a, vec b) { return _mm512_add_ps(a, b); }
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

// Runs `blocks` x kInner x kChains FMAs; returns a value that depends on all of them.
static float kernel(long blocks, float seed) {
  vec acc[kChains];
  for (int i = 0; i < kChains; ++i) acc[i] = set1(seed + 0.001f * i);
  const vec m = set1(0.999999f), a = set1(1e-7f);
  for (long b = 0; b < blocks; ++b) {
    for (long i = 0; i < kInner; ++i) {
#pragma GCC unroll 16
      for (int c = 0; c < kChains; ++c) acc[c] = fma(acc[c], m, a);
    }
  }
  vec t = acc[0];
  for (int i = 1; i < kChains; ++i) t = add(t, acc[i]);
  return sum(t);
}

int main(int argc, char** argv) {
  const int threads = argc > 1 ? std::atoi(argv[1]) : 1;
  const double seconds = argc > 2 ? std::atof(argv[2]) : 0.5;
  const int repeats = argc > 3 ? std::atoi(argv[3]) : 5;
  const double flops_per_block = 2.0 * kFloats * kChains * kInner;
  // Calibrate: blocks per thread for about `seconds`.
  auto t0 = std::chrono::steady_clock::now();
  volatile float sink = kernel(8, 1.0f);
  double dt = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  long blocks = static_cast<long>(seconds / (dt / 8)) + 1;
  std::vector<double> all;
  double best = 0;
  for (int r = 0; r < repeats; ++r) {
    std::vector<std::thread> pool;
    std::vector<float> out(threads);
    auto start = std::chrono::steady_clock::now();
    for (int t = 0; t < threads; ++t)
      pool.emplace_back([&, t] { out[t] = kernel(blocks, 1.0f + t); });
    for (auto& th : pool) th.join();
    double s = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
    for (float v : out) sink = sink + v;
    double g = flops_per_block * blocks * threads / s / 1e9;
    all.push_back(g);
    if (g > best) best = g;
  }
  std::printf("{\"threads\": %d, \"gflops\": %.1f, \"isa\": \"%s\", \"all_gflops\": [", threads, best,
              kIsa);
  for (size_t i = 0; i < all.size(); ++i) std::printf("%s%.1f", i ? ", " : "", all[i]);
  std::printf("]}\n");
  (void)sink;
  return 0;
}
