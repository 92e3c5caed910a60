// SPDX-License-Identifier: MIT
// Linear: an affine layer owning its weight (in, out) and bias (1, out).
#pragma once

#include <shareformer/core/error.hpp>
#include <shareformer/core/types.hpp>
#include <shareformer/ops/linear.hpp>

#include <random>

namespace shareformer {

namespace detail {
/// Fills m with N(0, stddev^2) draws from rng (deterministic for a given seed and standard library).
template <typename Derived, typename Rng>
void fill_normal(Eigen::MatrixBase<Derived>& m, Rng& rng, double stddev) {
  std::normal_distribution<double> normal(0.0, stddev);
  for (Index r = 0; r < m.rows(); ++r)
    for (Index c = 0; c < m.cols(); ++c)
      m(r, c) = static_cast<typename Derived::Scalar>(normal(rng));
}
}  // namespace detail

/// y = x W + b with W stored (in, out), the layout the row-major GEMM reads (the transpose of
/// PyTorch's [out, in]).
template <typename T>
class Linear {
 public:
  Linear() = default;
  /// Zero weight and bias. Throws ConfigError on a size < 1.
  Linear(Index in_features, Index out_features)
      : weight_(RowMatrix<T>::Zero(check(in_features, "in_features"),
                                   check(out_features, "out_features"))),
        bias_(RowVector<T>::Zero(out_features)) {}

  Index in_features() const { return weight_.rows(); }
  Index out_features() const { return weight_.cols(); }
  Index parameter_count() const { return weight_.size() + bias_.size(); }

  /// (in, out)
  const RowMatrix<T>& weight() const { return weight_; }
  RowMatrix<T>& weight() { return weight_; }
  /// (1, out)
  const RowVector<T>& bias() const { return bias_; }
  RowVector<T>& bias() { return bias_; }

  /// y = x W + b. x (rows, in), y (rows, out); scratch holds the GEMM's packing buffers.
  void forward(ConstMatrixRef<T> x, MatrixRef<T> y, int threads, ops::GemmScratch<T>& scratch) const {
    ops::linear<T>(x, weight_, bias_, y, threads, scratch);
  }
  /// y = x W + b with temporary packing buffers (allocates; the hot path passes a scratch).
  void forward(ConstMatrixRef<T> x, MatrixRef<T> y, int threads = 1) const {
    ops::GemmScratch<T> scratch;
    forward(x, y, threads, scratch);
  }
  /// y = act(x W + b), the activation fused into the GEMM. x (rows, in), y (rows, out).
  void forward_activate(ConstMatrixRef<T> x, Activation activation, MatrixRef<T> y, int threads,
                        ops::GemmScratch<T>& scratch) const {
    ops::linear_activate<T>(x, weight_, bias_, activation, y, threads, scratch);
  }
  /// y += x W + b. x (rows, in), y (rows, out).
  void forward_accumulate(ConstMatrixRef<T> x, MatrixRef<T> y, int threads,
                          ops::GemmScratch<T>& scratch) const {
    ops::linear_accumulate<T>(x, weight_, bias_, y, threads, scratch);
  }

  /// Weights N(0, stddev^2), biases N(0, bias_stddev^2).
  template <typename Rng>
  void randomize(Rng& rng, double stddev, double bias_stddev) {
    detail::fill_normal(weight_, rng, stddev);
    detail::fill_normal(bias_, rng, bias_stddev);
  }

 private:
  static Index check(Index n, const char* what) {
    if (n < 1)
      throw ConfigError(std::string("Linear: ") + what + " must be positive, got " +
                        detail::to_string(n));
    return n;
  }

  RowMatrix<T> weight_;
  RowVector<T> bias_;
};

}  // namespace shareformer
