// SPDX-License-Identifier: MIT
// Affine map y = x W + b over all rows at once, optionally added onto a residual.
#pragma once

#include <shareformer/core/config.hpp>
#include <shareformer/core/parallel.hpp>
#include <shareformer/core/types.hpp>
#include <shareformer/ops/activation.hpp>
#include <shareformer/ops/gemm.hpp>

namespace shareformer::ops {

// W is a row-major (in, out) matrix of T, a PackedMatrix, or (T = float) a bfloat16 matrix (see
// gemm_into). The bias is where the product starts (GemmStart), so it costs no pass of its own.

/// y = x W + b. x (rows, in), W (in, out), b (1, out), y (rows, out), y distinct from x.
template <typename T, typename Weights>
void linear(ConstMatrixRef<T> x, const Weights& w, const RowVector<T>& b, MatrixRef<T> y,
            int threads, GemmScratch<T>& scratch) {
  gemm_into<T>(x, w, GemmStart<T>{nullptr, 0, b.data()}, y, threads, scratch);
}

/// y = act(x W + b), the activation applied to each block of y as soon as the GEMM finishes it.
template <typename T, typename Weights>
void linear_activate(ConstMatrixRef<T> x, const Weights& w, const RowVector<T>& b,
                     Activation activation, MatrixRef<T> y, int threads, GemmScratch<T>& scratch) {
  gemm_into<T>(x, w, GemmStart<T>{nullptr, 0, b.data()}, y, threads, scratch,
               [&](Index row, Index rows, Index col, Index cols) {
                 detail::activate_rows<T>(activation, y.block(row, col, rows, cols));
               });
}

/// y = residual + x W + b: the projection closing a residual branch. residual (rows, out) is y
/// itself or a matrix that does not overlap it; y is distinct from x.
template <typename T, typename Weights>
void linear_residual(ConstMatrixRef<T> x, const Weights& w, const RowVector<T>& b,
                     ConstMatrixRef<T> residual, MatrixRef<T> y, int threads,
                     GemmScratch<T>& scratch) {
  gemm_into<T>(x, w, GemmStart<T>{residual.data(), residual.outerStride(), b.data()}, y, threads,
               scratch);
}

/// y += x W + b: linear_residual onto y itself.
template <typename T, typename Weights>
void linear_accumulate(ConstMatrixRef<T> x, const Weights& w, const RowVector<T>& b, MatrixRef<T> y,
                       int threads, GemmScratch<T>& scratch) {
  linear_residual<T>(x, w, b, y, y, threads, scratch);
}

}  // namespace shareformer::ops
