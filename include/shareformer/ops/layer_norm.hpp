// SPDX-License-Identifier: MIT
// Row-wise LayerNorm, in place: x = (x - mean) / sqrt(var + eps) * gamma + beta.
#pragma once

#include <shareformer/core/parallel.hpp>
#include <shareformer/core/types.hpp>

#include <cmath>

namespace shareformer::ops {

/// Normalises each row of x (rows, d) in place over its d features, then scales by gamma (1, d)
/// and shifts by beta (1, d). The variance is the biased one, as in PyTorch. Rows are split over
/// up to `threads` threads when there are enough of them.
template <typename T>
void layer_norm(MatrixRef<T> x, const RowVector<T>& gamma, const RowVector<T>& beta, T eps,
                int threads = 1) {
  const T inv_d = T(1) / static_cast<T>(x.cols());
  shareformer::detail::parallel_rows(x.rows(), x.cols(), threads, [&](Index begin, Index end) {
    for (Index r = begin; r < end; ++r) {
      auto row = x.row(r).array();
      const T mean = row.sum() * inv_d;
      row -= mean;
      const T inv_std = T(1) / std::sqrt(row.square().sum() * inv_d + eps);
      row = row * inv_std * gamma.array() + beta.array();
    }
  });
}

}  // namespace shareformer::ops
