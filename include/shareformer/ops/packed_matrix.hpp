// SPDX-License-Identifier: MIT
// PackedMatrix: a weight matrix laid out panel by panel, the order the small-product kernel reads
// it.
#pragma once

#include <shareformer/core/huge_pages.hpp>
#include <shareformer/core/types.hpp>
#include <shareformer/ops/small_gemm.hpp>

#include <Eigen/Core>
#include <cstddef>
#include <type_traits>
#include <vector>

namespace shareformer::ops {

namespace detail {
/// Where element (p, c) of a panel `w` columns wide and `rows` deep lies in PackedMatrix<T, B>'s
/// layout, counted from the panel's first element: row after row (p * w + c), except that
/// bfloat16 panels of whole packets keep their rows in pairs, (2q, 2q + 1) column by column
/// ((p - p % 2) * w + 2 c + p % 2), with an odd last row alone, in AVX-512 builds
/// (bf16_row_pairs). Either way row p starts at p * w when p is even, so passes over any
/// even number of rows start where they would.
template <typename T, typename B>
constexpr Index packed_offset(Index p, Index c, Index w, Index rows) {
  const bool pairs =
      !std::is_same_v<T, B> && bf16_row_pairs && w >= packet_size<T> && p < rows - rows % 2;
  return pairs ? (p - p % 2) * w + 2 * c + p % 2 : p * w + c;
}

/// Writes m (rows, cols) into out (m.size() elements of B) in PackedMatrix<T, B>'s panel layout.
template <typename T, typename B, typename Derived>
void pack_panels(const Eigen::MatrixBase<Derived>& m, B* out) {
  const Index rows = m.rows(), cols = m.cols();
  for (Index j = 0; j < cols;) {
    const Index w = packed_panel_width<T>(j, cols);
    B* panel = out + j * rows;
    for (Index p = 0; p < rows; ++p)
      for (Index c = 0; c < w; ++c)
        panel[packed_offset<T, B>(p, c, w, rows)] = static_cast<B>(m(p, j + c));
    j += w;
  }
}
}  // namespace detail

/// A (rows, cols) matrix for the right-hand side of products in T, stored as B (T, or bfloat16 for
/// T = float) in column panels: the panel starting at column j is detail::packed_panel_width<T>(j,
/// cols) columns wide (3 SIMD packets, then the 2 or 1 packets left, then what is left) and holds
/// its rows one after another from element j * rows (bfloat16 panels of whole packets, with
/// AVX-512: in pairs of rows, see detail::packed_offset, so that the kernel widens two rows with
/// one shift and one and instead of a shuffle and a shift per row). A product then streams each
/// panel from memory in one sequential pass instead of reading short pieces of rows a whole row's
/// length apart, which the hardware prefetcher cannot follow when a row spans pages (bench_ops
/// GemmStream, 16 tokens x bert-base FFN weights streamed from memory: 1.2-1.4x on 1 thread, 1.5x
/// on 2). The layout depends on the SIMD width the library is compiled for, so a PackedMatrix is a
/// cache built at run time, never a file format.
template <typename T, typename B = T>
class PackedMatrix {
 public:
  PackedMatrix() = default;
  /// Packs m, each element converted to B (bfloat16: rounded to nearest even).
  template <typename Derived>
  explicit PackedMatrix(const Eigen::MatrixBase<Derived>& m)
      : rows_(m.rows()), cols_(m.cols()), data_(static_cast<std::size_t>(m.size())) {
    detail::pack_panels<T>(m, data_.data());
  }

  Index rows() const { return rows_; }
  Index cols() const { return cols_; }
  bool empty() const { return data_.empty(); }
  /// Bytes of storage.
  std::size_t bytes() const { return data_.size() * sizeof(B); }
  const B* data() const { return data_.data(); }

  /// Element (r, c), for tests and inspection (not a fast path).
  B operator()(Index r, Index c) const {
    Index j = 0;
    while (j + detail::packed_panel_width<T>(j, cols_) <= c)
      j += detail::packed_panel_width<T>(j, cols_);
    const Index w = detail::packed_panel_width<T>(j, cols_);
    return data_[static_cast<std::size_t>(j * rows_ +
                                          detail::packed_offset<T, B>(r, c - j, w, rows_))];
  }

 private:
  Index rows_ = 0;
  Index cols_ = 0;
  std::vector<B, HugePageAllocator<B>> data_;  // in huge pages where Linux gives them
};

}  // namespace shareformer::ops
