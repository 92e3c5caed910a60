// SPDX-License-Identifier: MIT
// A register-blocked GEMM kernel for few rows (a handful of tokens times a weight matrix), written
// with Eigen's packet primitives so that it runs on every SIMD instruction set Eigen supports.
#pragma once

#include <shareformer/core/types.hpp>

#include <Eigen/Core>
#include <algorithm>
#include <cstdint>
#include <type_traits>
#include <utility>

namespace shareformer::ops {

/// What the output of a product starts from: c = start + a * b, where start is c0 (a matrix of c's
/// shape with leading dimension ld: c itself to accumulate, another matrix such as a residual, or
/// null for zero) plus bias (one value per column, added to every row, or null). The kernels load
/// it into their accumulators, so neither a bias nor a zero fill costs a pass over c of its own.
/// c0 is either exactly c (same data and ld) or does not overlap it.
template <typename T>
struct GemmStart {
  const T* c0 = nullptr;
  Index ld = 0;
  const T* bias = nullptr;

  /// The start of the block of c whose top-left element is (row, col).
  GemmStart at(Index row, Index col) const {
    return {c0 == nullptr ? nullptr : c0 + row * ld + col, ld,
            bias == nullptr ? nullptr : bias + col};
  }
  /// Element (row, col) of the start.
  T operator()(Index row, Index col) const {
    const T base = c0 == nullptr ? T(0) : c0[row * ld + col];
    return bias == nullptr ? base : (c0 == nullptr ? bias[col] : base + bias[col]);
  }
};

}  // namespace shareformer::ops

namespace shareformer::ops::detail {

template <typename T>
using Packet = typename Eigen::internal::packet_traits<T>::type;
template <typename T>
inline constexpr int packet_size = Eigen::internal::unpacket_traits<Packet<T>>::size;

/// Rows of c one tile updates: with 32 vector registers, 8 rows x 3 packets of accumulators plus
/// the 3 packets of b and one broadcast fit; with 16, 4 rows x 3.
/// Other AVX-512 tiles measured against 8 x 3 (Intel Xeon, 2026-12-06, benchmarks/ab, each shape
/// a module built from a copy of the tree with these two constants changed, alternated with this
/// one in one process for 10 rounds, outputs bit-identical; products in cache of 1024 rows onto
/// 768 x 3072 and 3072 x 768 and of 128 rows onto 768 x 2304, 1 and 2 threads): 6 x 4 1.00-1.07x,
/// 7 x 4 0.94-1.03x, 12 x 2 0.68-0.76x. 6 x 4 is no clear gain here; the AMD EPYC was not measured.
/// Nor did reading the activations from a k-major copy of each tile's rows (one pointer for the 8
/// broadcasts instead of 8 row pointers, two of them reloaded from the stack each step) pay:
/// 0.99x at 1024 x 768 x 3072 and 64 x 768 x 3072, 0.82x at 1024 x 3072 x 768 (8 rounds, 1
/// thread, the copy, a plain loop, included).
/// -DSHAREFORMER_SMALL_GEMM_ROWS=R and -DSHAREFORMER_SMALL_GEMM_PACKETS=P set another tile, for
/// such measurements (tests/CMakeLists.txt builds the product and stack tests with 6 x 4 and
/// 12 x 2).
#ifndef SHAREFORMER_SMALL_GEMM_ROWS
#define SHAREFORMER_SMALL_GEMM_ROWS (EIGEN_ARCH_DEFAULT_NUMBER_OF_REGISTERS >= 32 ? 8 : 4)
#endif
#ifndef SHAREFORMER_SMALL_GEMM_PACKETS
#define SHAREFORMER_SMALL_GEMM_PACKETS 3
#endif
inline constexpr int small_gemm_rows = SHAREFORMER_SMALL_GEMM_ROWS;
inline constexpr int small_gemm_packets = SHAREFORMER_SMALL_GEMM_PACKETS;
static_assert(small_gemm_rows >= 1 && small_gemm_packets >= 1, "a tile has rows and packets");
/// Whether packed bfloat16 weights keep their rows in pairs (see load_b_pair): in AVX-512 builds,
/// where they were measured and where a pair's 6 packets fit beside a tile's 8 x 3 accumulators
/// in the 32 vector registers. With 16 registers (AVX2, SSE: 4 x 3 accumulators) they would not
/// (reading row by row takes 3), so other builds keep one row after another.
#if defined(EIGEN_VECTORIZE_AVX512)
inline constexpr bool bf16_row_pairs = true;
#else
inline constexpr bool bf16_row_pairs = false;
#endif

template <typename F, int... I>
EIGEN_ALWAYS_INLINE void unrolled_each(F& f, std::integer_sequence<int, I...> /*indices*/) {
  (f(std::integral_constant<int, I>{}), ...);
}
/// Calls f(std::integral_constant<int, i>{}) for i = 0 .. N-1, expanded at compile time: a
/// register tile indexes its accumulator array only with constants, so the compiler keeps it in
/// registers at every optimisation level. Plain loops over the tile are unrolled by GCC 12 at -O3
/// only; at -O2 (RelWithDebInfo) the tiles spilled to the stack and whole forwards ran 2.5-3.1x
/// slower (bench_stack Stack12 d=768, 16 and 128 tokens, 1 thread, 2026-11-28).
template <int N, typename F>
EIGEN_ALWAYS_INLINE void unrolled(F&& f) {
  unrolled_each(f, std::make_integer_sequence<int, N>{});
}

/// One packet of T from b's storage: T itself, or (T = float) bfloat16, widened exactly by
/// moving its 16 bits into the high half of a float.
template <typename T, typename B>
EIGEN_ALWAYS_INLINE Packet<T> load_b(const B* p) {
  if constexpr (std::is_same_v<B, T>) {
    return Eigen::internal::ploadu<Packet<T>>(p);
  } else {
    static_assert(std::is_same_v<T, float> && std::is_same_v<B, Eigen::bfloat16>,
                  "b is stored as T or, for float, as bfloat16");
#if defined(EIGEN_VECTORIZE_AVX512)
    return Eigen::internal::Bf16ToF32(Eigen::internal::ploadu<Eigen::internal::Packet16bf>(p));
#elif defined(EIGEN_VECTORIZE_AVX)
    return Eigen::internal::Bf16ToF32(Eigen::internal::ploadu<Eigen::internal::Packet8bf>(p));
#elif defined(EIGEN_VECTORIZE_SSE2)
    const __m128i bits = _mm_loadl_epi64(reinterpret_cast<const __m128i*>(p));
    return _mm_castsi128_ps(_mm_unpacklo_epi16(_mm_setzero_si128(), bits));
#else
    EIGEN_ALIGN_MAX T widened[packet_size<T>];
    for (int i = 0; i < packet_size<T>; ++i) widened[i] = static_cast<T>(p[i]);
    return Eigen::internal::pload<Packet<T>>(widened);
#endif
  }
}

/// Two packets of T = float, rows p and p + 1 of a packet's columns, from bfloat16 stored in row
/// pairs (PackedMatrix<float, bfloat16>): one 32-bit word per column, row p's element in its low
/// half and row p + 1's in its high half. Widened exactly, with no shuffle: row p's half shifted
/// into the high half, row p + 1's kept by masking off the low half. load_b widens one row of
/// bfloat16 with a zero-extension (a shuffle) and a shift per packet; this takes a shift and an
/// and for two. Measured (Intel Xeon, AVX-512, 2026-11-29), against load_b on the row-by-row
/// layout: benchmarks/ab, whole bert-base forwards with use_bf16_weights() at 1 x 16, 32 and 64
/// tokens, shared and unshared, 30 rounds in one process, bit-identical outputs: 1.07-1.14x on 1
/// thread, 1.07-1.13x on 2; bench_ops GemmRoute route 4 (768 x 3072, in cache) 141-146 GFLOP/s at
/// 64 and 128 tokens where it had 131 (float weights: 157-163).
template <typename T>
EIGEN_ALWAYS_INLINE void load_b_pair(const Eigen::bfloat16* p, Packet<T>& lo, Packet<T>& hi) {
  static_assert(std::is_same_v<T, float>, "bfloat16 pairs widen to float");
#if defined(EIGEN_VECTORIZE_AVX512)
  using I = Eigen::internal::Packet16i;  // Packet<float>'s integer twin, the same width
  const I words = Eigen::internal::ploadu<I>(reinterpret_cast<const int*>(p));
  lo = Eigen::internal::preinterpret<Packet<T>>(Eigen::internal::plogical_shift_left<16>(words));
  hi = Eigen::internal::preinterpret<Packet<T>>(
      Eigen::internal::pand(words, Eigen::internal::pset1<I>(static_cast<int>(0xFFFF0000u))));
#else  // the same values lane by lane (the kernel uses pairs only with AVX-512: bf16_row_pairs)
  EIGEN_ALIGN_MAX T low[packet_size<T>], high[packet_size<T>];
  for (Index i = 0; i < packet_size<T>; ++i) {
    low[i] = static_cast<T>(p[2 * i]);
    high[i] = static_cast<T>(p[2 * i + 1]);
  }
  lo = Eigen::internal::pload<Packet<T>>(low);
  hi = Eigen::internal::pload<Packet<T>>(high);
#endif
}

/// Bytes ahead of the row being read that a tile streaming packed weights prefetches: 6 KiB.
/// Measured (2026-11-27, AVX-512, builds with -DSHAREFORMER_SMALL_GEMM_PREFETCH_BYTES=N, 4
/// interleaved rounds): bench_stack Stack12 bert-base 1 x 16 is 1.13-1.28x faster than with N = 0
/// (which prefetches only the row being read) on float weights and the same on bfloat16 ones;
/// bench_ops GemmStream gives the same figures for N = 1536, 6144 and 12288 within the noise.
#ifndef SHAREFORMER_SMALL_GEMM_PREFETCH_BYTES
#define SHAREFORMER_SMALL_GEMM_PREFETCH_BYTES 6144
#endif
inline constexpr Index small_gemm_prefetch_bytes = SHAREFORMER_SMALL_GEMM_PREFETCH_BYTES;

/// Prefetches the `bytes` bytes (a multiple of 64) that lie small_gemm_prefetch_bytes past `row`.
/// Integer arithmetic: the address may lie past the end of the array, where pointer arithmetic
/// would be undefined; a prefetch of any address is harmless.
EIGEN_ALWAYS_INLINE void prefetch_ahead(const void* row, int bytes) {
  const auto ahead = reinterpret_cast<std::uintptr_t>(row) +
                     static_cast<std::uintptr_t>(small_gemm_prefetch_bytes);
  for (int off = 0; off < bytes; off += 64) {
    const auto line = ahead + static_cast<std::uintptr_t>(off);
    // NOLINTNEXTLINE(performance-no-int-to-ptr): the address is only prefetched, never read.
    Eigen::internal::prefetch(reinterpret_cast<const char*>(line));
  }
}

/// Cache lines that a tile asks for while it computes: its share of the block of packed weights
/// that the next pass of the kernel will read. `lines` lines from `first` on (none when lines is
/// 0), into L1 (`l1`, prefetcht0) or into L2 only (prefetcht1).
struct PrefetchLines {
  const void* first = nullptr;
  Index lines = 0;
  bool l1 = false;
};

/// The CPU's vendor, read once per process (GCC's and Clang's __builtin_cpu_is on x86; other
/// compilers and CPUs: other). The kernel's tuning differs by vendor where measured so.
enum class CpuVendor { intel, amd, other };
inline CpuVendor cpu_vendor() {
#if defined(__GNUC__) && (defined(__x86_64__) || defined(__i386__))
  static const CpuVendor vendor = [] {
    __builtin_cpu_init();
    if (__builtin_cpu_is("intel")) return CpuVendor::intel;
    if (__builtin_cpu_is("amd")) return CpuVendor::amd;
    return CpuVendor::other;
  }();
  return vendor;
#else
  return CpuVendor::other;
#endif
}

/// Passes of at most this many row tiles (64 rows with AVX-512's 8-row tiles) prefetch the next
/// pass's block into L1; longer ones into L2 only, where it waits the whole pass without taking
/// L1 from the rows being computed. The best level differs between the two CPUs measured, so it
/// is chosen when first asked for: 0 (always L2) on Intel CPUs, 8 on others;
/// -DSHAREFORMER_PREFETCH_L1_MAX_TILES=N fixes it at N.
/// - AMD EPYC (Zen 5; 2026-11-28, -march=native, builds alternated round by round, medians of the
///   rounds): prefetching into L1 instead of L2 makes bench_ops GemmStream (weights from memory)
///   1.04-1.21x faster at 16, 32 and 64 tokens on 1 and 2 threads (all 12 cells, 5 rounds), and
///   bench_stack Stack12 bert-base at 16 and 32 tokens (shared and unshared, 1 and 2 threads)
///   1.05-1.17x faster in all 8 cells (4 rounds), then, with this limit, 1.00-1.20x (3 rounds;
///   unshared 16 tokens unchanged); at 128, 512 and 1024 tokens it was the same or up to 3 %
///   slower (2 rounds), hence the limit of 8.
/// - Intel Xeon (family 6 model 207, 2 MiB L2; benchmarks/ab, both levels in one process,
///   per-round medians): 2026-11-29 early, 2 x 40 rounds, 0.98-1.05x for 0 against 8 (14 of 16
///   cells at least 1.0); 2026-11-29 08:30-08:45 UTC, bert-base, 0 against 8: unshared 1 x 16
///   1.048x / 1.013x (1 / 2 threads, 40 rounds), unshared 1 x 32 1.001x / 1.015x, shared 1 x 16
///   1.033x / 1.027x, seed unshared 1 x 16 1.073x / 1.055x; shared 8 x 128 1.003x / 1.026x and
///   1 x 512 1.008x / 0.994x (8-10 rounds). Prefetching into L1 only for passes of 5-8 tiles gave
///   no more (1.00-1.05x).
inline Index prefetch_l1_max_tiles() {
#if defined(SHAREFORMER_PREFETCH_L1_MAX_TILES)
  return SHAREFORMER_PREFETCH_L1_MAX_TILES;
#else
  return cpu_vendor() == CpuVendor::intel ? Index{0} : Index{8};
#endif
}

/// Prefetches the cache line at `address`, into L1 and L2 (l1) or into L2 only.
EIGEN_ALWAYS_INLINE void prefetch_line(std::uintptr_t address, bool l1) {
  // NOLINTNEXTLINE(performance-no-int-to-ptr): the address is only prefetched, never read.
  const auto* line = reinterpret_cast<const char*>(address);
#if defined(__GNUC__)
  if (l1)
    __builtin_prefetch(line, 0, 3);
  else
    __builtin_prefetch(line, 0, 2);
#else
  Eigen::internal::prefetch(line);
#endif
}

/// Prefetches `lines` over the `steps` steps of a tile's k loop, evenly: step() once per step
/// issues, over all steps, exactly lines.lines prefetches.
class SpreadPrefetch {
 public:
  SpreadPrefetch(PrefetchLines lines, Index steps)
      : line_(reinterpret_cast<std::uintptr_t>(lines.first)),
        lines_(lines.lines),
        steps_(steps),
        l1_(lines.l1) {}
  EIGEN_ALWAYS_INLINE void step() {
    for (due_ += lines_; due_ >= steps_; due_ -= steps_, line_ += 64) prefetch_line(line_, l1_);
  }

 private:
  std::uintptr_t line_;
  Index lines_, steps_, due_ = 0;
  bool l1_;
};

/// acc[i][j] += a[i, q] * bv[j] for the MR rows of a tile: one row q of b's products, loaded into
/// bv (NR packets).
template <int MR, int NR, typename T>
EIGEN_ALWAYS_INLINE void add_row(Packet<T> (&acc)[MR][NR], const T* a, Index lda, Index q,
                                 const Packet<T> (&bv)[NR]) {
  unrolled<MR>([&](auto i) {
    const Packet<T> av = Eigen::internal::pset1<Packet<T>>(a[i * lda + q]);
    unrolled<NR>([&](auto j) { acc[i][j] = Eigen::internal::pmadd(av, bv[j], acc[i][j]); });
  });
}

/// c[0:MR, 0:NR*lanes] = start + a[0:MR, 0:k] * b[0:k, 0:NR*lanes] (start at the tile's origin),
/// the accumulators held in registers for the whole k loop. Streams b row by row: each loaded
/// packet of b serves MR rows. With Ahead, b's rows must be contiguous (ldb = NR * lanes, a packed
/// panel): the tile prefetches the bytes small_gemm_prefetch_bytes ahead of each row, so that a
/// panel streamed from memory arrives in time. Spread over its k steps, it also prefetches `next`.
/// With Pairs (bfloat16 b packed in row pairs, see PackedMatrix), b's rows come two at a time
/// from one load (load_b_pair), the last one alone when k is odd; each accumulator still adds
/// row p's product before row p + 1's, so the sums are those of the plain layout, bit for bit.
template <typename T, int MR, int NR, bool Ahead, bool Pairs, typename B>
EIGEN_ALWAYS_INLINE void small_tile(Index k, const T* a, Index lda, const B* b, Index ldb, T* c,
                                    Index ldc, GemmStart<T> start, PrefetchLines next) {
  using P = Packet<T>;
  constexpr int lanes = packet_size<T>;
  constexpr int row_bytes = NR * lanes * static_cast<int>(sizeof(B));
  P acc[MR][NR];
  unrolled<MR>([&](auto i) {
    unrolled<NR>([&](auto j) {
      acc[i][j] = start.c0 != nullptr
                      ? Eigen::internal::ploadu<P>(start.c0 + i * start.ld + j * lanes)
                      : Eigen::internal::pset1<P>(T(0));
    });
  });
  if (start.bias != nullptr)
    unrolled<NR>([&](auto j) {
      const P bias = Eigen::internal::ploadu<P>(start.bias + j * lanes);
      unrolled<MR>([&](auto i) {
        acc[i][j] = start.c0 != nullptr ? Eigen::internal::padd(acc[i][j], bias) : bias;
      });
    });
  SpreadPrefetch spread(next, k);
  Index p = 0;
  if constexpr (Pairs) {
    static_assert(!std::is_same_v<B, T>, "row pairs hold bfloat16");
    for (; p + 2 <= k; p += 2) {
      if constexpr (Ahead) prefetch_ahead(b + p * ldb, 2 * row_bytes);
      spread.step();
      spread.step();
      P lo[NR], hi[NR];
      unrolled<NR>([&](auto j) { load_b_pair<T>(b + p * ldb + j * 2 * lanes, lo[j], hi[j]); });
      add_row<MR, NR>(acc, a, lda, p, lo);
      add_row<MR, NR>(acc, a, lda, p + 1, hi);
    }
  }
  for (; p < k; ++p) {  // every row of the plain layout, or the last, unpaired one
    if constexpr (Ahead) prefetch_ahead(b + p * ldb, row_bytes);
    spread.step();
    P bv[NR];
    unrolled<NR>([&](auto j) { bv[j] = load_b<T>(b + p * ldb + j * lanes); });
    add_row<MR, NR>(acc, a, lda, p, bv);
  }
  unrolled<MR>([&](auto i) {
    unrolled<NR>([&](auto j) { Eigen::internal::pstoreu(c + i * ldc + j * lanes, acc[i][j]); });
  });
}

/// small_tile of exactly `rows` rows, for one of the heights R + 1 (R in Heights).
template <typename T, int NR, bool Ahead, bool Pairs, typename B, int... Heights>
void tile_of_height(std::integer_sequence<int, Heights...> /*heights - 1*/, Index rows, Index k,
                    const T* a, Index lda, const B* b, Index ldb, T* c, Index ldc,
                    GemmStart<T> start, PrefetchLines next) {
  (void)((rows == Heights + 1 &&
          (small_tile<T, Heights + 1, NR, Ahead, Pairs>(k, a, lda, b, ldb, c, ldc, start, next),
           true)) ||
         ...);
}

/// The last `rows` (< small_gemm_rows) rows of a panel: one tile of exactly that height.
template <typename T, int NR, bool Ahead, bool Pairs, typename B>
void small_tail(Index rows, Index k, const T* a, Index lda, const B* b, Index ldb, T* c, Index ldc,
                GemmStart<T> start, PrefetchLines next) {
  tile_of_height<T, NR, Ahead, Pairs>(std::make_integer_sequence<int, small_gemm_rows - 1>{}, rows,
                                      k, a, lda, b, ldb, c, ldc, start, next);
}

/// The block of packed weights that the pass after this one will read (`bytes` bytes from
/// `first`), or none, and whether to prefetch it into L1 (see prefetch_into_l1) or L2 only.
struct NextBlock {
  const void* first = nullptr;
  Index bytes = 0;
  bool l1 = false;
};

/// Whether the passes of a product over m rows, in tiles of `tile_rows`, prefetch the next pass's
/// block into L1: when they have at most prefetch_l1_max_tiles() tiles. Asked once per block of
/// rows, not once per tile as before: benchmarks/ab on the AMD EPYC (2026-12-05, 30-40 rounds,
/// outputs bit-identical) 1.07-1.11x faster whole forwards at 1 x 16 on 1 thread (bert-base
/// shared and unshared, seed unshared; bf16 weights 1.035x), 1.04-1.08x on 2; 1 x 32, 1 x 128
/// and 8 x 128 0.98-1.01x. The level fixed at compile time did the same (1.03-1.13x at 1 x 16).
inline bool prefetch_into_l1(Index m, Index tile_rows) {
  return (m + tile_rows - 1) / tile_rows <= prefetch_l1_max_tiles();
}

/// Passes of at least this many row tiles that prefetch the next pass's block into L1 leave that
/// block to the tiles after the first: the first tile, which also prefetches ahead of the rows it
/// reads, asks for none of it. Measured on the AMD EPYC (2026-12-06, benchmarks/ab against the
/// tree without the rule and against a second build of that tree as a control, outputs
/// bit-identical; per-round medians of 40-80 alternated rounds, 2-8 processes per shape):
/// bert-base unshared 1 x 32 (4 tiles per pass) 1.06-1.17x faster on 1 thread and 1.08-1.16x on
/// 2 (the control 0.95-1.11x), seed unshared 1 x 32 1.11-1.14x / 1.12x, bfloat16 weights 1.05-1.07x
/// / 0.99-1.06x; shared 1 x 32 (block in L3) 1.00-1.02x, unshared 1 x 64 (8 tiles) 1.00-1.05x.
/// With the rule at 3 tiles, 1 x 24 was 0.89-0.96x as fast, and at 2 tiles 1 x 16 0.82-0.86x: the
/// tiles left then have too little of the pass to bring the block in. Passes that prefetch into
/// L2 (more tiles, or an Intel CPU, see prefetch_l1_max_tiles) keep every tile's share (1 x 128,
/// 8 x 128 and 1 x 512 measured 0.98-1.04x, within the control's spread); the Intel Xeon was not
/// measured. Why the first tile's share costs time was not traced (this VM exposes no hardware
/// counters). -DSHAREFORMER_PREFETCH_SKIP_FIRST_MIN_TILES=N sets N (at least 2); a number above
/// any pass's tiles turns the rule off.
#ifndef SHAREFORMER_PREFETCH_SKIP_FIRST_MIN_TILES
#define SHAREFORMER_PREFETCH_SKIP_FIRST_MIN_TILES 4
#endif
inline constexpr Index prefetch_skip_first_min_tiles = SHAREFORMER_PREFETCH_SKIP_FIRST_MIN_TILES;
static_assert(
    prefetch_skip_first_min_tiles >= 2,
    "SHAREFORMER_PREFETCH_SKIP_FIRST_MIN_TILES below 2 would leave a one-tile pass's next "
    "block unprefetched");

/// The share of `next` (whole cache lines) that tile `tile` of `tiles` prefetches: the tiles of a
/// pass split the next pass's block evenly, so that it streams in at the pace of the arithmetic
/// instead of in a burst when the pass begins; the first tile takes no share when the block goes
/// into L1 and the pass has at least prefetch_skip_first_min_tiles tiles.
inline PrefetchLines prefetch_share(NextBlock next, Index tile, Index tiles) {
  const Index skip = next.l1 && tiles >= prefetch_skip_first_min_tiles ? 1 : 0;
  if (next.first == nullptr || tile < skip) return {next.first, 0, next.l1};  // no share
  const Index lines = next.bytes / 64, sharers = tiles - skip, t = tile - skip;
  const Index from = t * lines / sharers, to = (t + 1) * lines / sharers;
  return {static_cast<const char*>(next.first) + 64 * from, to - from, next.l1};
}

/// Rows [0, m) in tiles of small_gemm_rows rows (the last tile smaller), for one panel of NR
/// packets. With Prefetch (a packed panel) the first tile, which reads the panel from memory,
/// prefetches ahead of itself, and the tiles prefetch their shares of `next` (prefetch_share); a
/// packed panel of bfloat16 is read in row pairs where it has them (see small_tile,
/// bf16_row_pairs).
template <typename T, int NR, bool Prefetch, typename B>
void small_panel(Index m, Index k, const T* a, Index lda, const B* b, Index ldb, T* c, Index ldc,
                 GemmStart<T> start, NextBlock next = {}) {
  constexpr int mr = small_gemm_rows;
  constexpr bool pairs = Prefetch && !std::is_same_v<T, B> && bf16_row_pairs;
  const Index tiles = (m + mr - 1) / mr;
  const auto share = [&](Index tile) {
    return Prefetch ? prefetch_share(next, tile, tiles) : PrefetchLines{};
  };
  if (m < mr)
    return small_tail<T, NR, Prefetch, pairs>(m, k, a, lda, b, ldb, c, ldc, start, share(0));
  small_tile<T, mr, NR, Prefetch, pairs>(k, a, lda, b, ldb, c, ldc, start, share(0));
  Index i = mr, tile = 1;
  for (; i + mr <= m; i += mr, ++tile)
    small_tile<T, mr, NR, false, pairs>(k, a + i * lda, lda, b, ldb, c + i * ldc, ldc,
                                        start.at(i, 0), share(tile));
  small_tail<T, NR, false, pairs>(m - i, k, a + i * lda, lda, b, ldb, c + i * ldc, ldc,
                                  start.at(i, 0), share(tile));
}

/// Depth of one pass over k: a (kc x 3 packets) block of b stays in L1 while every row tile of c
/// reads it (kc 256: 48 KiB of floats; 256 measured best of 96..512 in benchmarks/bench_ops).
#ifndef SHAREFORMER_SMALL_GEMM_KC
#define SHAREFORMER_SMALL_GEMM_KC 256
#endif
inline constexpr Index small_gemm_kc = SHAREFORMER_SMALL_GEMM_KC;

/// Columns of one full panel: what small_gemm and packed_gemm give a register tile at a time.
template <typename T>
inline constexpr Index small_gemm_panel = Index{small_gemm_packets} * packet_size<T>;

/// Width of the panel that starts at column j of n columns (of a packed matrix, or as small_gemm
/// walks an unpacked one): a full panel (3 packets) while one fits, then one panel of the 2 or 1
/// whole packets left, then the remaining (fewer than a packet) columns as one panel. Only those
/// last two are narrower than a full panel, so chunks of whole full panels (as threads take the
/// columns) begin and end between panels.
/// Two packets are one panel rather than two of one packet: a tile of 8 rows x 1 packet keeps
/// only 8 accumulators in flight, too few to hide the FMA latency; 8 x 2 keeps 16. Measured
/// (Intel Xeon, 2026-11-29, benchmarks/ab against the previous layout, in one process, outputs
/// bit-identical; per-round medians): attention alone with 32-column heads (V's panels; 20 rounds)
/// 1.04x at 1 x 128 tokens, 1.07x at 1 x 512, 1.13x at 8 x 128, 64-column heads the same;
/// whole MiniLM-shaped forwards (d 384, 12 heads; 12 rounds) 1.01-1.03x on 1 thread, seed-shaped
/// ones (512 and 2048 columns end in 2 packets; 15 rounds) 0.99-1.01x on 1 thread and 1.01-1.03x
/// on 2, products of 1024 rows onto 512 and 2048 columns 1.01-1.02x.
template <typename T>
constexpr Index packed_panel_width(Index j, Index n) {
  constexpr Index lanes = packet_size<T>;
  const Index left = n - j;
  if (left >= small_gemm_panel<T>) return small_gemm_panel<T>;
  if (left >= 2 * lanes) return 2 * lanes;
  return left >= lanes ? lanes : left;
}

/// small_panel for a panel `w` columns wide (a whole number of packets, at most a full panel):
/// the one dispatch from a width to a register tile, for small_gemm and packed_gemm_block.
template <typename T, bool Prefetch, typename B>
void panel_of_width(Index w, Index m, Index k, const T* a, Index lda, const B* b, Index ldb, T* c,
                    Index ldc, GemmStart<T> start, NextBlock next = {}) {
  if (w == small_gemm_panel<T>)
    small_panel<T, small_gemm_packets, Prefetch>(m, k, a, lda, b, ldb, c, ldc, start, next);
  else if (w == 2 * packet_size<T>)
    small_panel<T, 2, Prefetch>(m, k, a, lda, b, ldb, c, ldc, start, next);
  else
    small_panel<T, 1, Prefetch>(m, k, a, lda, b, ldb, c, ldc, start, next);
}

/// c[i, col] = start(i, col) + sum_p a[i, p] * b(p, col - first) for one panel of `cols` scalar
/// columns (fewer than a packet) of b with element (p, j) at b[p * ldb + j].
template <typename T, typename B>
void scalar_columns(Index m, Index k, const T* a, Index lda, const B* b, Index ldb, T* c, Index ldc,
                    Index first, Index cols, GemmStart<T> start) {
  for (Index col = 0; col < cols; ++col)
    for (Index i = 0; i < m; ++i) {
      T acc = start(i, first + col);
      for (Index p = 0; p < k; ++p) acc += a[i * lda + p] * static_cast<T>(b[p * ldb + col]);
      c[i * ldc + first + col] = acc;
    }
}

/// c = start for columns [col_begin, col_end) of m rows: what a product over k = 0 leaves.
template <typename T>
void write_start(Index m, T* c, Index ldc, GemmStart<T> start, Index col_begin, Index col_end) {
  for (Index i = 0; i < m; ++i)
    for (Index j = col_begin; j < col_end; ++j) c[i * ldc + j] = start(i, j);
}

/// c (m, n) = start + a (m, k) * b (k, n) for columns [col_begin, col_end) of b and c, all
/// row-major; b holds T or (T = float) bfloat16, widened to T as it is read.
/// k goes in passes of small_gemm_kc (the first starting from `start`, the others from c); within
/// a pass, columns go in panels of 3 packets, then one of 2 or 1 where that many are left (see
/// packed_panel_width), then one scalar column at a time.
/// After the last pass over a panel, epilogue(first column, columns) runs on it while it is still
/// in cache.
template <typename T, typename B, typename Epilogue>
void small_gemm(Index m, Index k, const T* a, Index lda, const B* b, Index ldb, T* c, Index ldc,
                GemmStart<T> start, Index col_begin, Index col_end, Epilogue&& epilogue) {
  constexpr Index lanes = packet_size<T>;
  for (Index k0 = 0; k0 < k; k0 += small_gemm_kc) {
    const Index kc = std::min(small_gemm_kc, k - k0);
    const bool last = k0 + kc == k;
    const GemmStart<T> from = k0 == 0 ? start : GemmStart<T>{c, ldc, nullptr};
    const T* ak = a + k0;
    const B* bk = b + k0 * ldb;
    for (Index j = col_begin; j < col_end;) {
      const Index w = packed_panel_width<T>(j, col_end);
      if (w < lanes)
        scalar_columns<T>(m, kc, ak, lda, bk + j, ldb, c, ldc, j, w, from);
      else
        panel_of_width<T, false>(w, m, kc, ak, lda, bk + j, ldb, c + j, ldc, from.at(0, j));
      if (last) epilogue(j, w);
      j += w;
    }
  }
  if (k == 0) {
    write_start(m, c, ldc, start, col_begin, col_end);
    epilogue(col_begin, col_end - col_begin);
  }
}

/// Depth of one pass over a packed panel: 768 rows (144 KiB of floats in a full AVX-512 panel), so
/// that the part of a panel every row tile reads stays in L2 however deep the product. bench_ops
/// GemmStream at 16 and 64 tokens (builds with -DSHAREFORMER_PACKED_GEMM_KC=N, 3 interleaved
/// rounds): 768 and one pass over the whole depth measure the same (depths 768 and 3072); 256 is
/// 5-20 % slower. Again with benchmarks/ab (Intel Xeon, 2026-11-29, speed against 768): 128-384
/// within 0.99-1.03 for whole forwards at 16 and 32 tokens (one 1.09: 128 at 16 tokens on 2
/// threads); at 1024 rows 128 and 256 were 0.94-0.97x.
#ifndef SHAREFORMER_PACKED_GEMM_KC
#define SHAREFORMER_PACKED_GEMM_KC 768
#endif
inline constexpr Index packed_gemm_kc = SHAREFORMER_PACKED_GEMM_KC;
static_assert(packed_gemm_kc > 0 && packed_gemm_kc % 2 == 0,
              "passes start on even rows, where bfloat16 row pairs begin (see PackedMatrix)");

/// The block of a packed (k, n) matrix that the pass after (panel j, depth k0) reads: the next
/// pass over the same panel, else the first pass over the next panel before col_end, else none.
template <typename T, typename B>
NextBlock next_packed_block(const B* packed, Index k, Index n, Index j, Index k0, Index col_end) {
  const Index w = packed_panel_width<T>(j, n);
  const Index k1 = k0 + packed_gemm_kc;
  if (k1 < k)
    return {packed + j * k + k1 * w, std::min(packed_gemm_kc, k - k1) * w * Index{sizeof(B)}};
  if (j + w >= col_end) return {};
  return {packed + (j + w) * k,
          std::min(packed_gemm_kc, k) * packed_panel_width<T>(j + w, n) * Index{sizeof(B)}};
}

/// Rows of one block of a product with packed weights whose activations exceed the CPU's budget
/// (see packed_gemm_whole_bytes_for). bench_ops GemmRoute (Intel Xeon, 2 MiB L2, 512-4096 rows, 3
/// rounds): blocks of 64 rows 1.03-1.25x faster than no blocks, 128 the same as 64, 256 slower
/// than 64; benchmarks/ab (2026-11-29, 1024 rows, 30 rounds): 128 0.91-1.00x and 256 0.94-0.97x
/// of 64.
#ifndef SHAREFORMER_PACKED_GEMM_ROWS
#define SHAREFORMER_PACKED_GEMM_ROWS 64
#endif
inline constexpr Index packed_gemm_rows = SHAREFORMER_PACKED_GEMM_ROWS;

/// The most bytes of activations (m x k of T) that packed_gemm runs as one block of rows, for an
/// L2 of `l2` bytes: half of it on Intel CPUs and on CPUs not measured, eight times it on AMD's.
/// A block's activations stay in cache while every panel of the weights streams past them;
/// outside it, whole rows cost the activations' trip from further out for every panel, and
/// blocks of rows cost the weights' trip once per block. Which costs more depends on the CPU:
/// - Intel Xeon (family 6 model 207, 2 MiB L2; 2026-12-07, benchmarks/ab, the rules alternated
///   in one process, outputs bit-identical): with half the L2, not all of it as until then,
///   products of 512 rows onto 768 x 3072 and 768 x 2304 (1.5 MiB of activations) 1.04-1.06x
///   faster in blocks (10 rounds), 3072 x 768 (blocked either way) 1.00x; whole bert-base
///   forwards 1 x 512 on 1 thread 1.03x (16 rounds), 8 x 128 on 2 threads (512 rows a thread)
///   1.04x (10 rounds), unshared 1 x 384 on 1 thread 1.02x (12 rounds), and 1 x 512 on 2 threads
///   (256 rows a thread, whole under either rule: the control) 1.00x. Blocking every product,
///   however small, measured no better (1 x 128 and 1 x 256: 1.00x).
/// - AMD EPYC (Zen 5, 1 MiB L2 a core; 2026-12-07, the same way), where the L3 feeds the
///   activations almost as fast as the L2: whole rows against blocks of 64, 1 thread, 10-12
///   rounds: onto 768 x 3072 1.02-1.03x faster at 192-768 rows (0.56-2.3 MiB), 768 x 2304 1.03x
///   at 1024 and 1.02x at 2048 (6 MiB); onto 3072 x 768 1.01-1.03x at 64-512 rows, 1.01x at 1024
///   (12 MiB), 0.89x at 2048 and 0.82x at 4096 (24 and 48 MiB); 4096 x 768 x 3072 (12 MiB) 0.98x.
///   Eight L2s (8 MiB) sit between the last size whole rows won and the first they lost. Whole
///   bert-base forwards under this rule against half the L2 (12-30 rounds, per-round medians):
///   shared 1 x 512 1.015x on 1 thread and 1.03x on 2, 1 x 128 shared and unshared 1.01x on
///   either, 8 x 128 shared and unshared 1.00x and 1.03x (16 rounds); 16 MiB or no blocks at all
///   instead measured the same as 8 MiB within the noise (8 x 128, 16-20 rounds).
/// Why the two CPUs differ was not traced (no hardware counters on these VMs); the L3 a core
/// can reach quickly (32 MiB per 8 cores on the AMD) is the likely difference.
inline Index packed_gemm_whole_bytes_for(Index l2, bool amd) { return amd ? 8 * l2 : l2 / 2; }

/// packed_gemm_whole_bytes_for this CPU (its L2 as Eigen reads it, Eigen::l2CacheSize()), or
/// SHAREFORMER_PACKED_GEMM_WHOLE_BYTES when set above 0.
#ifndef SHAREFORMER_PACKED_GEMM_WHOLE_BYTES
#define SHAREFORMER_PACKED_GEMM_WHOLE_BYTES 0
#endif
inline Index packed_gemm_whole_bytes() {
  static const Index bytes =
      SHAREFORMER_PACKED_GEMM_WHOLE_BYTES > 0
          ? Index{SHAREFORMER_PACKED_GEMM_WHOLE_BYTES}
          : packed_gemm_whole_bytes_for(static_cast<Index>(Eigen::l2CacheSize()),
                                        cpu_vendor() == CpuVendor::amd);
  return bytes;
}

/// Rows packed_gemm takes at a time for a product over m rows of depth k: all of them while their
/// activations (m x k of T) take at most `whole_bytes` (see packed_gemm_whole_bytes_for), else
/// blocks of packed_gemm_rows.
template <typename T>
Index packed_gemm_block_rows(Index m, Index k, Index whole_bytes = packed_gemm_whole_bytes()) {
  return m * k * Index{sizeof(T)} <= whole_bytes ? std::max<Index>(m, 1) : packed_gemm_rows;
}

/// packed_gemm on rows [0, m) only: panel by panel, each in passes of packed_gemm_kc.
template <typename T, typename B, typename Epilogue>
void packed_gemm_block(Index m, Index k, const T* a, Index lda, const B* packed, Index n, T* c,
                       Index ldc, GemmStart<T> start, Index col_begin, Index col_end,
                       Epilogue&& epilogue) {
  const bool l1 = prefetch_into_l1(m, small_gemm_rows);
  for (Index j = col_begin; j < col_end;) {
    const Index w = packed_panel_width<T>(j, n);
    const B* panel = packed + j * k;
    if (k == 0) {
      write_start(m, c, ldc, start, j, j + w);
    } else if (w < packet_size<T>) {
      scalar_columns<T>(m, k, a, lda, panel, w, c, ldc, j, w, start);
    } else {
      for (Index k0 = 0; k0 < k; k0 += packed_gemm_kc) {
        const Index kc = std::min(packed_gemm_kc, k - k0);
        const GemmStart<T> from = (k0 == 0 ? start : GemmStart<T>{c, ldc, nullptr}).at(0, j);
        NextBlock next = next_packed_block<T>(packed, k, n, j, k0, col_end);
        next.l1 = l1;
        panel_of_width<T, true>(w, m, kc, a + k0, lda, panel + k0 * w, w, c + j, ldc, from, next);
      }
    }
    epilogue(j, w);
    j += w;
  }
}

/// c (m, n) = start + a (m, k) * b (k, n) for columns [col_begin, col_end), b packed panel by
/// panel (see PackedMatrix): the panel starting at column j holds its k rows contiguously from
/// packed[j * k]. col_begin must start a panel and col_end end one. Rows go in blocks (all of them
/// at once while their activations fit the CPU's budget, see packed_gemm_whole_bytes_for); within a
/// block, each panel is streamed in order, in passes of packed_gemm_kc rows (the first starting
/// from `start`, the others from c).
/// A pass's first row tile prefetches ahead of the rows it reads, and its row tiles together (see
/// prefetch_share) prefetch the block the next pass reads, at the pace of the arithmetic rather
/// than in a burst when that pass begins (into L1 or L2 depending on the CPU and the pass's rows,
/// see prefetch_l1_max_tiles).
/// Measured (bench_stack Stack12, -march=native, against the build without it, alternated 3-4
/// rounds, 2026-11-27): unshared stacks, whose weights stream from memory, 1.02-1.33x faster at
/// 16-32 tokens and 1.03-1.05x at 128; shared stacks (weights in L3) and 1024 tokens the same
/// within the noise. bfloat16 products (bf16_dot.hpp), unshared: 1.01-1.45x.
/// The row blocks, measured on an Intel Xeon with a 2 MiB L2 (2026-11-28, 3 alternated rounds,
/// bench_stack Stack12 bert-base, against the build that runs all rows at once): 1.01-1.10x
/// faster at 8 x 128 and 1 x 512 tokens on one thread, 1.00-1.07x on two; 128 tokens, which fit,
/// unchanged. Always blocking rows instead lost 1-10 % where they fit (1 x 128: 0.95-0.99x;
/// 1 x 512 on 2 threads, 256 rows per thread: 0.90-0.99x in two A/Bs); see
/// packed_gemm_whole_bytes_for for the rule of 2026-12-07 (per CPU) and what it measured.
///
/// epilogue(first row, rows, first column, columns) runs on a block of c as soon as it is done.
template <typename T, typename B, typename Epilogue>
void packed_gemm(Index m, Index k, const T* a, Index lda, const B* packed, Index n, T* c, Index ldc,
                 GemmStart<T> start, Index col_begin, Index col_end, Epilogue&& epilogue) {
  const Index block = packed_gemm_block_rows<T>(m, k);
  Index r = 0;
  do {  // at least once: with no rows, the epilogue still sees every column
    const Index rows = std::min(block, m - r);
    packed_gemm_block<T>(rows, k, a + r * lda, lda, packed, n, c + r * ldc, ldc, start.at(r, 0),
                         col_begin, col_end,
                         [&](Index col, Index cols) { epilogue(r, rows, col, cols); });
    r += block;
  } while (r < m);
}

}  // namespace shareformer::ops::detail
