// SPDX-License-Identifier: MIT
// Element-wise activations (GELU erf, GELU tanh, ReLU), applied in place.
#pragma once

#include <shareformer/core/config.hpp>
#include <shareformer/core/parallel.hpp>
#include <shareformer/core/types.hpp>

#include <unsupported/Eigen/SpecialFunctions>

#include <cmath>

namespace shareformer::ops {

namespace detail {
template <typename T>
void activate_rows(Activation activation, MatrixRef<T> x) {
  auto a = x.array();
  switch (activation) {
    case Activation::GeluErf:
      a = T(0.5) * a * (T(1) + (a * T(0.70710678118654752440)).erf());
      break;
    case Activation::GeluTanh:
      a = T(0.5) * a * (T(1) + (T(0.79788456080286535588) * (a + T(0.044715) * a.cube())).tanh());
      break;
    case Activation::Relu: a = a.max(T(0)); break;
  }
}
}  // namespace detail

/// GELU with the exact Gaussian CDF: 0.5 x (1 + erf(x / sqrt 2)).
template <typename T>
inline T gelu_erf(T x) {
  return T(0.5) * x * (T(1) + std::erf(x * T(0.70710678118654752440)));
}

/// GELU's tanh approximation: 0.5 x (1 + tanh(sqrt(2 / pi) (x + 0.044715 x^3))).
template <typename T>
inline T gelu_tanh(T x) {
  const T inner = T(0.79788456080286535588) * (x + T(0.044715) * x * x * x);
  return T(0.5) * x * (T(1) + std::tanh(inner));
}

/// Applies `activation` to every element of x, in place, with Eigen's vectorised functions; rows
/// are split over up to `threads` threads when there are enough of them.
template <typename T>
void activate(Activation activation, MatrixRef<T> x, int threads = 1) {
  shareformer::detail::parallel_rows(x.rows(), x.cols(), threads, [&](Index begin, Index end) {
    detail::activate_rows<T>(activation, x.middleRows(begin, end - begin));
  });
}

}  // namespace shareformer::ops
