// SPDX-License-Identifier: MIT
// Affine map y = x W + b over all rows at once, optionally accumulated onto a residual.
#pragma once

#include <shareformer/core/types.hpp>
#include <shareformer/core/config.hpp>
#include <shareformer/core/parallel.hpp>
#include <shareformer/ops/activation.hpp>
#include <shareformer/ops/gemm.hpp>

namespace shareformer::ops {

// W is a row-major (in, out) matrix of T, a PackedMatrix, or (T = float) a bfloat16 matrix (see
// gemm_accumulate).

namespace detail {
/// y = b on every row of y, or y += b with `accumulate`; rows split over threads like the
/// element-wise ops, so that the other threads do not wait for one to fill a large output.
template <typename T>
void bias_rows(const RowVector<T>& b, MatrixRef<T> y, bool accumulate, int threads) {
  shareformer::detail::parallel_rows(y.rows(), y.cols(), threads, [&](Index begin, Index end) {
    auto rows = y.middleRows(begin, end - begin);
    if (accumulate)
      rows.rowwise() += b;
    else
      rows.rowwise() = b;
  });
}
}  // namespace detail

/// y = x W + b. x (rows, in), W (in, out), b (1, out), y (rows, out), y distinct from x.
template <typename T, typename Weights>
void linear(ConstMatrixRef<T> x, const Weights& w, const RowVector<T>& b, MatrixRef<T> y,
            int threads, GemmScratch<T>& scratch) {
  // The bias is the GEMM's starting value, so it costs no separate pass.
  detail::bias_rows<T>(b, y, false, threads);
  gemm_accumulate<T>(x, w, y, threads, scratch);
}

/// y = act(x W + b), the activation applied to each block of y as soon as the GEMM finishes it.
template <typename T, typename Weights>
void linear_activate(ConstMatrixRef<T> x, const Weights& w, const RowVector<T>& b,
                     Activation activation, MatrixRef<T> y, int threads, GemmScratch<T>& scratch) {
  detail::bias_rows<T>(b, y, false, threads);
  gemm_accumulate<T>(x, w, y, threads, scratch, [&](Index row, Index rows, Index col, Index cols) {
    detail::activate_rows<T>(activation, y.block(row, col, rows, cols));
  });
}

/// y += x W + b: the projection closing a residual branch, added onto the residual in y.
template <typename T, typename Weights>
void linear_accumulate(ConstMatrixRef<T> x, const Weights& w, const RowVector<T>& b,
                       MatrixRef<T> y, int threads, GemmScratch<T>& scratch) {
  detail::bias_rows<T>(b, y, true, threads);
  gemm_accumulate<T>(x, w, y, threads, scratch);
}

}  // namespace shareformer::ops
