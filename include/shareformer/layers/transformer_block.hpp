// SPDX-License-Identifier: MIT
// TransformerBlock: one attention sub-layer followed by one FFN sub-layer.
#pragma once

#include <shareformer/core/batch.hpp>
#include <shareformer/core/config.hpp>
#include <shareformer/core/error.hpp>
#include <shareformer/layers/attention.hpp>
#include <shareformer/layers/feed_forward.hpp>
#include <shareformer/layers/workspace.hpp>

#include <utility>

namespace shareformer {

namespace detail {
/// Throws ShapeError unless x is (batch.tokens(), d_model).
template <typename T>
void check_input(const char* who, ConstMatrixRef<T> x, const Batch& batch, Index d_model) {
  if (x.cols() != d_model)
    throw ShapeError(std::string(who) + ": input has " + to_string(x.cols()) +
                     " columns, expected d_model = " + to_string(d_model));
  if (x.rows() != batch.tokens())
    throw ShapeError(std::string(who) + ": input has " + to_string(x.rows()) +
                     " rows, expected batch * seq_len = " + to_string(batch.batch()) + " * " +
                     to_string(batch.seq_len()) + " = " + to_string(batch.tokens()));
}
}  // namespace detail

/// One transformer layer: attention sub-layer then FFN sub-layer, each with its residual and
/// LayerNorm (post- or pre-LN as configured).
template <typename T>
class TransformerBlock {
 public:
  TransformerBlock() = default;
  /// Zero weights (LayerNorm gains 1). Throws ConfigError when c is invalid.
  explicit TransformerBlock(const BlockConfig& c) : config_(c), attention_(c), ffn_(c) {}
  /// A block made of copies of two existing sub-layers.
  TransformerBlock(const BlockConfig& c, AttentionSublayer<T> attention, FfnSublayer<T> ffn)
      : config_(c), attention_(std::move(attention)), ffn_(std::move(ffn)) {}

  const BlockConfig& config() const { return config_; }
  Index parameter_count() const { return attention_.parameter_count() + ffn_.parameter_count(); }

  const AttentionSublayer<T>& attention() const { return attention_; }
  AttentionSublayer<T>& attention() { return attention_; }
  const FfnSublayer<T>& ffn() const { return ffn_; }
  FfnSublayer<T>& ffn() { return ffn_; }

  /// Applies the block in place on h (batch.tokens(), d_model). Throws ShapeError on a bad shape.
  void forward(MatrixRef<T> h, const Batch& batch, Workspace<T>& ws, int threads = 1) const {
    detail::check_input<T>("TransformerBlock", h, batch, config_.d_model);
    ws.prepare(batch.tokens(), config_);
    attention_.forward(h, batch, ws, threads);
    ffn_.forward(h, ws, threads);
  }

  /// Returns the block applied to x (batch.tokens(), d_model).
  RowMatrix<T> forward(ConstMatrixRef<T> x, const Batch& batch, int threads = 1) const {
    RowMatrix<T> h = x;
    Workspace<T> ws;
    forward(h, batch, ws, threads);
    return h;
  }

  /// Calls f on each Linear: attention's, then the FFN's.
  template <typename F>
  void for_each_linear(F&& f) {
    attention_.for_each_linear(f);
    ffn_.for_each_linear(f);
  }

  template <typename Rng>
  void randomize(Rng& rng, double stddev, double bias_stddev, double norm_stddev) {
    attention_.randomize(rng, stddev, bias_stddev, norm_stddev);
    ffn_.randomize(rng, stddev, bias_stddev, norm_stddev);
  }

 private:
  BlockConfig config_;
  AttentionSublayer<T> attention_;
  FfnSublayer<T> ffn_;
};

}  // namespace shareformer
