// SPDX-License-Identifier: MIT
// Numerically stable softmax over the first `n` entries of a row.
#pragma once

#include <shareformer/core/types.hpp>

#include <type_traits>

namespace shareformer::ops {

/// Softmax of scale * row in place over its entries [0, n) (scale > 0), subtracting the maximum
/// first; entries from n on are set to 0. With n == 0 the whole row is zeros (a fully masked row
/// attends to nothing).
template <typename Row>
void softmax_prefix(Row&& row, Index n, typename std::decay_t<Row>::Scalar scale = 1) {
  using T = typename std::decay_t<Row>::Scalar;
  if (n < row.size()) row.tail(row.size() - n).setZero();
  if (n == 0) return;
  auto valid = row.head(n).array();
  const T max = valid.maxCoeff();
  valid = ((valid - max) * scale).exp();
  valid *= T(1) / valid.sum();
}

}  // namespace shareformer::ops
