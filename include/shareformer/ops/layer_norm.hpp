// SPDX-License-Identifier: MIT
// Row-wise LayerNorm: y = (x - mean) / sqrt(var + eps) * gamma + beta.
#pragma once

#include <shareformer/core/parallel.hpp>
#include <shareformer/core/types.hpp>

#include <cassert>
#include <cmath>

namespace shareformer::ops {

/// y = each row of x (rows, d) normalised over its d features, then scaled by gamma (1, d) and
/// shifted by beta (1, d). x and y are the same matrix (in place) or do not overlap. The variance
/// is the biased one, as in PyTorch. Rows are split over up to `threads` threads when there are
/// enough of them.
template <typename T>
void layer_norm(ConstMatrixRef<T> x, MatrixRef<T> y, const RowVector<T>& gamma,
                const RowVector<T>& beta, T eps, int threads = 1) {
  assert(x.rows() == y.rows() && x.cols() == y.cols());
  const T inv_d = T(1) / static_cast<T>(x.cols());
  shareformer::detail::parallel_rows(x.rows(), x.cols(), threads, [&](Index begin, Index end) {
    for (Index r = begin; r < end; ++r) {
      const T mean = x.row(r).sum() * inv_d;
      auto row = y.row(r).array();
      row = x.row(r).array() - mean;
      const T inv_std = T(1) / std::sqrt(row.square().sum() * inv_d + eps);
      row = row * inv_std * gamma.array() + beta.array();
    }
  });
}

/// Normalises each row of x in place (see above).
template <typename T>
void layer_norm(MatrixRef<T> x, const RowVector<T>& gamma, const RowVector<T>& beta, T eps,
                int threads = 1) {
  layer_norm<T>(x, x, gamma, beta, eps, threads);
}

}  // namespace shareformer::ops
