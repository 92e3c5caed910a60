// SPDX-License-Identifier: MIT
// Linear: an affine layer owning its weight (in, out) and bias (1, out).
#pragma once

#include <shareformer/core/error.hpp>
#include <shareformer/core/types.hpp>
#include <shareformer/ops/bf16_dot.hpp>
#include <shareformer/ops/linear.hpp>

#include <cstddef>
#include <random>
#include <type_traits>

namespace shareformer {

namespace detail {
/// Fills m with N(0, stddev^2) draws from rng (deterministic for a given seed and standard
/// library).
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
  /// Mutable access drops the packed copies (see pack_weights, use_bf16_weights), which could
  /// otherwise go stale.
  RowMatrix<T>& weight() {
    packed_ = {};
    packed_bf16_ = {};
    packed_dot_ = {};
    return weight_;
  }
  /// (1, out)
  const RowVector<T>& bias() const { return bias_; }
  RowVector<T>& bias() { return bias_; }

  /// Keeps a copy of the weight packed panel by panel (ops::PackedMatrix) that forward streams in
  /// order: faster wherever the weights do not stay in cache (few tokens, unshared stacks). Used
  /// for products of at most ops::small_gemm_max_rows rows (every product without
  /// SHAREFORMER_USE_BLAS). Costs memory: the copy is as large as the weight. Call it again after
  /// changing the weight; a mutable weight() access drops the copy. Ends use_bf16_products.
  void pack_weights() {
    packed_ = ops::PackedMatrix<T>(weight_);
    packed_dot_ = {};
  }
  /// Whether forward has a packed copy of the weight to read.
  bool has_packed_weights() const { return !packed_.empty(); }

  /// Rounds the weight to the nearest bfloat16 (ties to even) and keeps a packed bfloat16 copy that
  /// forward reads for inputs of at most ops::bf16_gemm_max_rows rows, where streaming the weights
  /// is what takes the time: half the bytes. Larger inputs read the float weight (or its packed
  /// copy, which is repacked here), which now holds the same values, so every path computes the
  /// same product (in float). Costs memory: the copy is half the float weight again. Ends
  /// use_bf16_products. float only.
  void use_bf16_weights() {
    static_assert(std::is_same_v<T, float>, "bfloat16 weights are for float models");
    round_weight_to_bf16();
    packed_bf16_ = ops::PackedMatrix<T, Eigen::bfloat16>(weight_);
    if (has_packed_weights()) pack_weights();
    packed_dot_ = {};
  }
  /// Whether forward reads a bfloat16 copy of the weight for small inputs.
  bool uses_bf16_weights() const { return !packed_bf16_.empty(); }

  /// Computes every product in bfloat16 with float sums, a different precision: rounds the weight
  /// to the nearest bfloat16 and keeps a copy laid out for AVX512-BF16's vdpbf16ps
  /// (ops::Bf16PairMatrix, half the float weight's bytes); forward then rounds its input to
  /// bfloat16 too, so each product term carries bfloat16's 8-bit precision (the sums stay float).
  /// Twice the FLOPs per instruction of float FMAs. Builds without AVX512-BF16 (see
  /// ops::has_bf16_dot) compute the same sums with a slow portable loop. Drops the other copies
  /// (pack_weights or use_bf16_weights afterwards end this mode). float only.
  void use_bf16_products() {
    static_assert(std::is_same_v<T, float>, "bfloat16 products are for float models");
    round_weight_to_bf16();
    packed_dot_ = ops::Bf16PairMatrix(weight_);
    packed_ = {};
    packed_bf16_ = {};
  }
  /// Whether forward computes in bfloat16 products (use_bf16_products).
  bool uses_bf16_products() const { return !packed_dot_.empty(); }

  /// bfloat16 elements of scratch (ops::GemmScratch::bf16_rows) a forward over `rows` rows
  /// needs: its input rounded to bfloat16 under use_bf16_products, else none.
  Index bf16_scratch(Index rows) const {
    return packed_dot_.empty() ? 0 : rows * 2 * packed_dot_.pairs();
  }

  /// Bytes of the packed copies (pack_weights, use_bf16_weights, use_bf16_products), on top of
  /// the weight itself.
  std::size_t packed_bytes() const {
    return packed_.bytes() + packed_bf16_.bytes() + packed_dot_.bytes();
  }

  /// y = x W + b. x (rows, in), y (rows, out); scratch holds the GEMM's packing buffers.
  void forward(ConstMatrixRef<T> x, MatrixRef<T> y, int threads,
               ops::GemmScratch<T>& scratch) const {
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
  /// y = residual + x W + b. x (rows, in); residual, y (rows, out), residual either y itself or
  /// not overlapping it: the projection that closes a residual branch, the residual read where the
  /// product starts.
  void forward_residual(ConstMatrixRef<T> x, ConstMatrixRef<T> residual, MatrixRef<T> y,
                        int threads, ops::GemmScratch<T>& scratch) const {
    with_weights(x, [&](const auto& w) {
      ops::linear_residual<T>(x, w, bias_, residual, y, threads, scratch);
    });
  }
  /// y += x W + b. x (rows, in), y (rows, out).
  void forward_accumulate(ConstMatrixRef<T> x, MatrixRef<T> y, int threads,
                          ops::GemmScratch<T>& scratch) const {
    forward_residual(x, y, y, threads, scratch);
  }

  /// Weights N(0, stddev^2), biases N(0, bias_stddev^2). Drops the packed copies.
  template <typename Rng>
  void randomize(Rng& rng, double stddev, double bias_stddev) {
    detail::fill_normal(weight(), rng, stddev);
    detail::fill_normal(bias_, rng, bias_stddev);
  }

 private:
  // Calls f with the weights a product with x's rows reads: the bfloat16 pair copy (every
  // product), the packed bfloat16 copy, the packed copy or the weight itself.
  template <typename F>
  void with_weights(ConstMatrixRef<T> x, F&& f) const {
    if constexpr (std::is_same_v<T, float>) {
      if (!packed_dot_.empty()) return f(packed_dot_);
      if (!packed_bf16_.empty() && x.rows() <= ops::bf16_gemm_max_rows) return f(packed_bf16_);
    }
    if (!packed_.empty() && x.rows() <= ops::small_gemm_max_rows) return f(packed_);
    f(weight_);
  }

  // Rounds the weight to the nearest bfloat16 (ties to even), kept in T.
  void round_weight_to_bf16() {
    weight_ = weight_.unaryExpr([](T w) { return static_cast<T>(Eigen::bfloat16(w)); });
  }

  static Index check(Index n, const char* what) {
    if (n < 1)
      throw ConfigError(std::string("Linear: ") + what + " must be positive, got " +
                        detail::to_string(n));
    return n;
  }

  RowMatrix<T> weight_;
  RowVector<T> bias_;
  ops::PackedMatrix<T> packed_;                        // empty unless pack_weights()
  ops::PackedMatrix<T, Eigen::bfloat16> packed_bf16_;  // empty unless use_bf16_weights()
  ops::Bf16PairMatrix packed_dot_;                     // empty unless use_bf16_products()
};

}  // namespace shareformer
