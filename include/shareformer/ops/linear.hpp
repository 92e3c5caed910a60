// SPDX-License-Identifier: MIT
// Affine map y = x W + b over all rows at once, optionally accumulated onto a residual.
#pragma once

#include <shareformer/core/types.hpp>
#include <shareformer/core/config.hpp>
#include <shareformer/ops/activation.hpp>
#include <shareformer/ops/gemm.hpp>

namespace shareformer::ops {

// W is a row-major (in, out) matrix of T, or of bfloat16 for T = float (see gemm_accumulate).

/// y = x W + b. x (rows, in), W (in, out), b (1, out), y (rows, out), y distinct from x.
template <typename T, typename Weights>
void linear(ConstMatrixRef<T> x, const Weights& w, const RowVector<T>& b, MatrixRef<T> y,
            int threads, GemmScratch<T>& scratch) {
  // The bias is the GEMM's starting value, so it costs no separate pass.
  y.rowwise() = b;
  gemm_accumulate<T>(x, w, y, threads, scratch);
}

/// y = act(x W + b), the activation applied to each block of y as soon as the GEMM finishes it.
template <typename T, typename Weights>
void linear_activate(ConstMatrixRef<T> x, const Weights& w, const RowVector<T>& b,
                     Activation activation, MatrixRef<T> y, int threads, GemmScratch<T>& scratch) {
  y.rowwise() = b;
  gemm_accumulate<T>(x, w, y, threads, scratch, [&](Index row, Index rows, Index col, Index cols) {
    detail::activate_rows<T>(activation, y.block(row, col, rows, cols));
  });
}

/// y += x W + b: the projection closing a residual branch, added onto the residual in y.
template <typename T, typename Weights>
void linear_accumulate(ConstMatrixRef<T> x, const Weights& w, const RowVector<T>& b,
                       MatrixRef<T> y, int threads, GemmScratch<T>& scratch) {
  y.rowwise() += b;
  gemm_accumulate<T>(x, w, y, threads, scratch);
}

}  // namespace shareformer::ops
