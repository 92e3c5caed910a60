// SPDX-License-Identifier: MIT
// LayerNorm: per-feature gain and bias over the last dimension.
#pragma once

#include <shareformer/core/error.hpp>
#include <shareformer/core/types.hpp>
#include <shareformer/layers/linear.hpp>
#include <shareformer/ops/layer_norm.hpp>

namespace shareformer {

/// LayerNorm over d features with gain gamma (1, d), bias beta (1, d) and epsilon eps.
template <typename T>
class LayerNorm {
 public:
  LayerNorm() = default;
  /// gamma = 1, beta = 0. Throws ConfigError on d < 1 or eps <= 0.
  LayerNorm(Index d, double eps)
      : gamma_(RowVector<T>::Ones(d > 0
                                      ? d
                                      : throw ConfigError("LayerNorm: size must be positive, got " +
                                                          detail::to_string(d)))),
        beta_(RowVector<T>::Zero(d)),
        eps_(eps > 0.0 ? static_cast<T>(eps)
                       : throw ConfigError("LayerNorm: eps must be positive, got " +
                                           std::to_string(eps))) {}

  Index size() const { return gamma_.size(); }
  Index parameter_count() const { return gamma_.size() + beta_.size(); }
  T eps() const { return eps_; }

  const RowVector<T>& gamma() const { return gamma_; }
  RowVector<T>& gamma() { return gamma_; }
  const RowVector<T>& beta() const { return beta_; }
  RowVector<T>& beta() { return beta_; }

  /// Normalises each row of x (rows, d) in place, on up to `threads` threads.
  void forward(MatrixRef<T> x, int threads = 1) const {
    ops::layer_norm<T>(x, x, gamma_, beta_, eps_, threads);
  }
  /// y = LayerNorm(x), row by row; x and y (rows, d) either the same matrix or not overlapping.
  void forward(ConstMatrixRef<T> x, MatrixRef<T> y, int threads = 1) const {
    ops::layer_norm<T>(x, y, gamma_, beta_, eps_, threads);
  }

  /// gamma = 1 + N(0, stddev^2), beta = N(0, stddev^2): non-trivial values for tests.
  template <typename Rng>
  void randomize(Rng& rng, double stddev) {
    detail::fill_normal(gamma_, rng, stddev);
    gamma_.array() += T(1);
    detail::fill_normal(beta_, rng, stddev);
  }

 private:
  RowVector<T> gamma_;
  RowVector<T> beta_;
  T eps_ = T(1e-5);
};

}  // namespace shareformer
