// SPDX-License-Identifier: MIT
// Linear: an affine layer owning its weight (in, out) and bias (1, out).
#pragma once

#include <shareformer/core/error.hpp>
#include <shareformer/core/types.hpp>
#include <shareformer/ops/linear.hpp>

#include <random>
#include <type_traits>

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
  /// Mutable access drops the bfloat16 copy (see use_bf16_weights), which could otherwise go stale.
  RowMatrix<T>& weight() {
    compact_.resize(0, 0);
    return weight_;
  }
  /// (1, out)
  const RowVector<T>& bias() const { return bias_; }
  RowVector<T>& bias() { return bias_; }

  /// Rounds the weight to the nearest bfloat16 (ties to even) and keeps a bfloat16 copy that
  /// forward reads for inputs of at most ops::bf16_gemm_max_rows rows, where streaming the weights
  /// is what takes the time: half the bytes. Larger inputs read the float weight, which now holds
  /// the same values, so every path computes the same product (in float). Costs memory: the copy
  /// is half the float weight again. float only.
  void use_bf16_weights() {
    static_assert(std::is_same_v<T, float>, "bfloat16 weights are for float models");
    weight_ = weight_.unaryExpr([](T w) { return static_cast<T>(Eigen::bfloat16(w)); });
    compact_ = weight_.template cast<Eigen::bfloat16>();
  }
  /// Whether forward reads a bfloat16 copy of the weight for small inputs.
  bool uses_bf16_weights() const { return compact_.size() != 0; }

  /// y = x W + b. x (rows, in), y (rows, out); scratch holds the GEMM's packing buffers.
  void forward(ConstMatrixRef<T> x, MatrixRef<T> y, int threads, ops::GemmScratch<T>& scratch) const {
    with_weights(x, [&](const auto& w) { ops::linear<T>(x, w, bias_, y, threads, scratch); });
  }
  /// y = x W + b with temporary packing buffers (allocates; the hot path passes a scratch).
  void forward(ConstMatrixRef<T> x, MatrixRef<T> y, int threads = 1) const {
    ops::GemmScratch<T> scratch;
    forward(x, y, threads, scratch);
  }
  /// y = act(x W + b), the activation fused into the GEMM. x (rows, in), y (rows, out).
  void forward_activate(ConstMatrixRef<T> x, Activation activation, MatrixRef<T> y, int threads,
                        ops::GemmScratch<T>& scratch) const {
    with_weights(x, [&](const auto& w) {
      ops::linear_activate<T>(x, w, bias_, activation, y, threads, scratch);
    });
  }
  /// y += x W + b. x (rows, in), y (rows, out).
  void forward_accumulate(ConstMatrixRef<T> x, MatrixRef<T> y, int threads,
                          ops::GemmScratch<T>& scratch) const {
    with_weights(x, [&](const auto& w) {
      ops::linear_accumulate<T>(x, w, bias_, y, threads, scratch);
    });
  }

  /// Weights N(0, stddev^2), biases N(0, bias_stddev^2).
  template <typename Rng>
  void randomize(Rng& rng, double stddev, double bias_stddev) {
    detail::fill_normal(weight_, rng, stddev);
    detail::fill_normal(bias_, rng, bias_stddev);
  }

 private:
  // Calls f with the weights a product with x's rows reads: the bfloat16 copy or the float weight.
  template <typename F>
  void with_weights(ConstMatrixRef<T> x, F&& f) const {
    if constexpr (std::is_same_v<T, float>) {
      if (compact_.size() != 0 && x.rows() <= ops::bf16_gemm_max_rows) return f(compact_);
    }
    f(weight_);
  }

  static Index check(Index n, const char* what) {
    if (n < 1)
      throw ConfigError(std::string("Linear: ") + what + " must be positive, got " +
                        detail::to_string(n));
    return n;
  }

  RowMatrix<T> weight_;
  RowVector<T> bias_;
  RowMatrix<Eigen::bfloat16> compact_;  // empty unless use_bf16_weights()
};

}  // namespace shareformer
