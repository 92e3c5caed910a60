// SPDX-License-Identifier: MIT
// Products in bfloat16 with float sums: the weights and the activations rounded to bfloat16,
// multiplied in pairs and accumulated in float by AVX512-BF16's vdpbf16ps (twice the FLOPs of an
// FMA per instruction), or by a portable loop that computes the same sums where it is missing.
#pragma once

#include <shareformer/core/huge_pages.hpp>
#include <shareformer/core/parallel.hpp>
#include <shareformer/core/types.hpp>
#include <shareformer/ops/gemm.hpp>
#include <shareformer/ops/small_gemm.hpp>

#include <Eigen/Core>
#include <algorithm>
#include <cassert>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <vector>

#if defined(__AVX512BF16__) && defined(__AVX512F__) && defined(__AVX512BW__)
#include <immintrin.h>
#define SHAREFORMER_HAS_BF16_DOT 1
#else
#define SHAREFORMER_HAS_BF16_DOT 0
#endif

namespace shareformer::ops {

/// Whether this build has the AVX512-BF16 kernel (compiled with -mavx512bf16, e.g. -march=native on
/// a CPU that has it). Without it gemm_into on a Bf16PairMatrix computes the same sums with a
/// plain loop: right, but far slower than float products.
inline constexpr bool has_bf16_dot = SHAREFORMER_HAS_BF16_DOT == 1;

/// A (rows, cols) matrix rounded to bfloat16 (nearest, ties to even) and stored for vdpbf16ps:
/// column panels of 48 columns while they fit, then 16, then the rest (zero-padded to 16); within
/// a panel, rows go in pairs (2q, 2q + 1), each column's two elements next to each other (an odd
/// last row is paired with zeros). The panel starting at column j begins at element
/// j * pairs() * 2. Like PackedMatrix, a cache built at run time, never a file format.
class Bf16PairMatrix {
 public:
  static constexpr Index lanes = 16;
  static constexpr Index full_panel = 3 * lanes;

  Bf16PairMatrix() = default;
  template <typename Derived>
  explicit Bf16PairMatrix(const Eigen::MatrixBase<Derived>& m)
      : rows_(m.rows()), cols_(m.cols()), pairs_((m.rows() + 1) / 2) {
    data_.assign(static_cast<std::size_t>(pairs_ * 2 * storage_cols()), Eigen::bfloat16(0.0f));
    for (Index j = 0; j < cols_; j += panel_width(j)) {
      const Index w = panel_width(j), stride = padded(w);
      Eigen::bfloat16* panel = data_.data() + j * pairs_ * 2;
      for (Index p = 0; p < rows_; ++p)
        for (Index c = 0; c < w; ++c)
          panel[(p / 2) * stride * 2 + c * 2 + p % 2] =
              Eigen::bfloat16(static_cast<float>(m(p, j + c)));
    }
  }

  Index rows() const { return rows_; }
  Index cols() const { return cols_; }
  /// Row pairs: (rows + 1) / 2.
  Index pairs() const { return pairs_; }
  bool empty() const { return data_.empty(); }
  std::size_t bytes() const { return data_.size() * sizeof(Eigen::bfloat16); }
  const Eigen::bfloat16* data() const { return data_.data(); }

  /// Columns of the panel that starts at column j.
  Index panel_width(Index j) const {
    const Index left = cols_ - j;
    if (left >= full_panel) return full_panel;
    return std::min(left, lanes);
  }
  /// Columns a panel of width w occupies in storage (a partial packet is padded to a whole one).
  static Index padded(Index w) { return (w + lanes - 1) / lanes * lanes; }

  /// Element (r, c) as stored, for tests and inspection (not a fast path).
  Eigen::bfloat16 operator()(Index r, Index c) const {
    Index j = 0;
    while (j + panel_width(j) <= c) j += panel_width(j);
    const Index stride = padded(panel_width(j));
    return data_[static_cast<std::size_t>(j * pairs_ * 2 + (r / 2) * stride * 2 + (c - j) * 2 +
                                          r % 2)];
  }

 private:
  // 48-column panels, then 16-column ones, then the rest padded to 16: cols rounded up to 16.
  Index storage_cols() const { return padded(cols_); }

  Index rows_ = 0;
  Index cols_ = 0;
  Index pairs_ = 0;
  std::vector<Eigen::bfloat16, HugePageAllocator<Eigen::bfloat16>> data_;  // huge pages where given
};

namespace detail {

/// Rows of bfloat16 activations for a product: a (m, k) rounded to nearest even, each row padded
/// with a zero to an even length (2 * pairs), in buf. Rows split over threads.
inline void round_rows_to_bf16(ConstMatrixRef<float> a, Index pairs, Eigen::bfloat16* buf,
                               int threads) {
  const Index m = a.rows(), k = a.cols(), ld = 2 * pairs;
  shareformer::detail::parallel_rows(m, k, threads, [&](Index begin, Index end) {
    for (Index i = begin; i < end; ++i) {
      const float* src = a.data() + i * a.outerStride();
      Eigen::bfloat16* dst = buf + i * ld;
      Index p = 0;
#if SHAREFORMER_HAS_BF16_DOT
      for (; p + 16 <= k; p += 16) {
        const __m256bh h = _mm512_cvtneps_pbh(_mm512_loadu_ps(src + p));
        std::memcpy(static_cast<void*>(dst + p), &h, sizeof h);
      }
#endif
      for (; p < k; ++p) dst[p] = Eigen::bfloat16(src[p]);
      if (k < ld) dst[k] = Eigen::bfloat16(0.0f);
    }
  });
}

/// The block of b that the pass after (panel j, pairs from q0) reads, passes being `pass` pairs
/// deep: the next pass over the same panel, else the first pass over the next panel before
/// col_end, else none (as next_packed_block for PackedMatrix).
inline NextBlock next_pair_block(const Bf16PairMatrix& b, Index j, Index q0, Index pass,
                                 Index col_end) {
  const Index pairs = b.pairs(), w = b.panel_width(j);
  const auto bytes = [&](Index width, Index rows) {
    return rows * 2 * Bf16PairMatrix::padded(width) * Index{sizeof(Eigen::bfloat16)};
  };
  const Index q1 = q0 + pass;
  if (q1 < pairs)
    return {b.data() + j * pairs * 2 + q1 * 2 * Bf16PairMatrix::padded(w),
            bytes(w, std::min(pass, pairs - q1))};
  if (j + w >= col_end) return {};
  return {b.data() + (j + w) * pairs * 2, bytes(b.panel_width(j + w), std::min(pass, pairs))};
}

#if SHAREFORMER_HAS_BF16_DOT
/// c[0:MR, 0:NR*16] = start + a b over `pairs` row pairs of one panel: a holds MR rows of bfloat16
/// activations (row stride lda, pairs read as one 32-bit word), b the panel's pairs (stride
/// 2 * panel storage width per pair). The last packet of each row loads and stores only the
/// columns in `last` (a partial panel). With Prefetch, prefetches small_gemm_prefetch_bytes ahead;
/// spread over its steps, it prefetches `next` (see small_tile).
template <int MR, int NR, bool Prefetch>
EIGEN_ALWAYS_INLINE void dot_tile(Index pairs, const Eigen::bfloat16* a, Index lda,
                                  const Eigen::bfloat16* b, Index ldb, float* c, Index ldc,
                                  GemmStart<float> start, __mmask16 last, PrefetchLines next) {
  __m512 acc[MR][NR];
  unrolled<NR>([&](auto j) {
    const __mmask16 mask = j == NR - 1 ? last : __mmask16(0xFFFF);
    const __m512 bias = start.bias != nullptr ? _mm512_maskz_loadu_ps(mask, start.bias + 16 * j)
                                              : _mm512_setzero_ps();
    unrolled<MR>([&](auto i) {
      if (start.c0 == nullptr)
        acc[i][j] = bias;
      else if (start.bias == nullptr)
        acc[i][j] = _mm512_maskz_loadu_ps(mask, start.c0 + i * start.ld + 16 * j);
      else
        acc[i][j] =
            _mm512_add_ps(_mm512_maskz_loadu_ps(mask, start.c0 + i * start.ld + 16 * j), bias);
    });
  });
  SpreadPrefetch spread(next, pairs);
  for (Index q = 0; q < pairs; ++q) {
    const Eigen::bfloat16* row = b + q * ldb;
    if constexpr (Prefetch) prefetch_ahead(row, NR * 64);
    spread.step();
    __m512bh bv[NR];
    unrolled<NR>([&](auto j) {
      const __m512i bits = _mm512_loadu_si512(row + 32 * j);
      std::memcpy(&bv[j], &bits, sizeof bits);
    });
    unrolled<MR>([&](auto i) {
      std::int32_t pair;
      std::memcpy(&pair, a + i * lda + 2 * q, sizeof pair);
      const __m512i bits = _mm512_set1_epi32(pair);
      __m512bh av;
      std::memcpy(&av, &bits, sizeof bits);
      unrolled<NR>([&](auto j) { acc[i][j] = _mm512_dpbf16_ps(acc[i][j], av, bv[j]); });
    });
  }
  unrolled<MR>([&](auto i) {
    unrolled<NR>([&](auto j) {
      _mm512_mask_storeu_ps(c + i * ldc + 16 * j, j == NR - 1 ? last : __mmask16(0xFFFF),
                            acc[i][j]);
    });
  });
}

/// Rows of dot_panel's tiles.
inline constexpr int dot_tile_rows = 8;

/// Rows [0, m) of one panel in tiles of dot_tile_rows rows (the last smaller); the first tile
/// prefetches ahead of itself, and the tiles prefetch their shares of `next` (see prefetch_share).
template <int NR>
void dot_panel(Index m, Index pairs, const Eigen::bfloat16* a, Index lda, const Eigen::bfloat16* b,
               Index ldb, float* c, Index ldc, GemmStart<float> start, __mmask16 last,
               NextBlock next) {
  constexpr int mr = dot_tile_rows;
  const Index tiles = (m + mr - 1) / mr;
  Index i = 0, tile = 0;
  for (; i + mr <= m; i += mr, ++tile) {
    const PrefetchLines share = prefetch_share(next, tile, tiles);
    if (i == 0)
      dot_tile<mr, NR, true>(pairs, a, lda, b, ldb, c, ldc, start, last, share);
    else
      dot_tile<mr, NR, false>(pairs, a + i * lda, lda, b, ldb, c + i * ldc, ldc, start.at(i, 0),
                              last, share);
  }
  a += i * lda;
  c += i * ldc;
  start = start.at(i, 0);
  const PrefetchLines share = prefetch_share(next, tile, tiles);
  switch (m - i) {
    case 7: dot_tile<7, NR, false>(pairs, a, lda, b, ldb, c, ldc, start, last, share); break;
    case 6: dot_tile<6, NR, false>(pairs, a, lda, b, ldb, c, ldc, start, last, share); break;
    case 5: dot_tile<5, NR, false>(pairs, a, lda, b, ldb, c, ldc, start, last, share); break;
    case 4: dot_tile<4, NR, false>(pairs, a, lda, b, ldb, c, ldc, start, last, share); break;
    case 3: dot_tile<3, NR, false>(pairs, a, lda, b, ldb, c, ldc, start, last, share); break;
    case 2: dot_tile<2, NR, false>(pairs, a, lda, b, ldb, c, ldc, start, last, share); break;
    case 1: dot_tile<1, NR, false>(pairs, a, lda, b, ldb, c, ldc, start, last, share); break;
    default: break;
  }
}
#endif

/// c = start + a b for the panels of b in columns [col_begin, col_end) (whole panels), with a
/// already rounded (abf: m rows of 2 * pairs bfloat16). Depth in passes of packed_gemm_kc rows.
template <typename Epilogue>
void bf16_dot_panels(Index m, const Eigen::bfloat16* abf, const Bf16PairMatrix& b, float* c,
                     Index ldc, GemmStart<float> start, Index col_begin, Index col_end,
                     Epilogue&& epilogue) {
  const Index pairs = b.pairs(), lda = 2 * pairs;
  for (Index j = col_begin; j < col_end;) {
    const Index w = b.panel_width(j), ldb = 2 * Bf16PairMatrix::padded(w);
    const Eigen::bfloat16* panel = b.data() + j * pairs * 2;
    if (pairs == 0) {
      write_start(m, c, ldc, start, j, j + w);
    } else {
#if SHAREFORMER_HAS_BF16_DOT
      const __mmask16 last = static_cast<__mmask16>(w % 16 == 0 ? 0xFFFF : (1u << (w % 16)) - 1u);
      const Index pass = std::max<Index>(1, packed_gemm_kc / 2);
      const bool l1 = prefetch_into_l1(m, dot_tile_rows);
      for (Index q0 = 0; q0 < pairs; q0 += pass) {
        const Index qc = std::min(pass, pairs - q0);
        const GemmStart<float> from =
            (q0 == 0 ? start : GemmStart<float>{c, ldc, nullptr}).at(0, j);
        NextBlock next = next_pair_block(b, j, q0, pass, col_end);
        next.l1 = l1;
        if (w == Bf16PairMatrix::full_panel)
          dot_panel<3>(m, qc, abf + 2 * q0, lda, panel + q0 * ldb, ldb, c + j, ldc, from, last,
                       next);
        else
          dot_panel<1>(m, qc, abf + 2 * q0, lda, panel + q0 * ldb, ldb, c + j, ldc, from, last,
                       next);
      }
#else
      // The same sums without the instruction: each pair's two products (exact in float) added,
      // then accumulated in float.
      for (Index i = 0; i < m; ++i)
        for (Index col = 0; col < w; ++col) {
          float acc = start(i, j + col);
          for (Index q = 0; q < pairs; ++q) {
            const Eigen::bfloat16* bp = panel + q * ldb + 2 * col;
            const Eigen::bfloat16* ap = abf + i * lda + 2 * q;
            acc += static_cast<float>(ap[0]) * static_cast<float>(bp[0]) +
                   static_cast<float>(ap[1]) * static_cast<float>(bp[1]);
          }
          c[i * ldc + j + col] = acc;
        }
#endif
    }
    epilogue(j, w);
    j += w;
  }
}

}  // namespace detail

/// c = start + a b in bfloat16 products with float sums: a rounded to bfloat16 (into scratch),
/// b a Bf16PairMatrix. Each thread takes whole panels of b. epilogue(row, rows, col, cols) as for
/// the float gemm_into.
template <typename T, typename Epilogue = NoEpilogue>
void gemm_into(ConstMatrixRef<T> a, const Bf16PairMatrix& b, GemmStart<T> start, MatrixRef<T> c,
               int threads, GemmScratch<T>& scratch, Epilogue&& epilogue = {}) {
  static_assert(std::is_same_v<T, float>, "bfloat16 products are for float models");
  assert(a.cols() == b.rows() && c.rows() == a.rows() && c.cols() == b.cols());
  const Index m = a.rows();
  Eigen::bfloat16* abf = scratch.bf16_rows(m * 2 * b.pairs());
  detail::round_rows_to_bf16(a, b.pairs(), abf, threads);
  // Threads split the columns in whole panels: chunks of 48 columns start panels, and the last
  // chunk ends where b does.
  shareformer::detail::parallel_chunks(
      b.cols(), Bf16PairMatrix::full_panel, threads, [&](Index begin, Index end, int) {
        detail::bf16_dot_panels(m, abf, b, c.data(), c.outerStride(), start, begin, end,
                                [&](Index col, Index cols) { epilogue(Index(0), m, col, cols); });
      });
}

}  // namespace shareformer::ops
