// SPDX-License-Identifier: MIT
// MultiHeadAttention (fused QKV projection) and AttentionSublayer (attention + its LayerNorm).
#pragma once

#include <shareformer/core/batch.hpp>
#include <shareformer/core/config.hpp>
#include <shareformer/layers/layer_norm.hpp>
#include <shareformer/layers/linear.hpp>
#include <shareformer/layers/workspace.hpp>
#include <shareformer/ops/attention.hpp>

namespace shareformer {

/// Multi-head self-attention: QKV = x W_qkv + b_qkv with W_qkv (d_model, 3 d_model) = [W_q | W_k |
/// W_v], scaled dot-product attention per head, then the output projection (d_model, d_model).
template <typename T>
class MultiHeadAttention {
 public:
  MultiHeadAttention() = default;
  /// Zero weights. Throws ConfigError when c is invalid (e.g. d_model not divisible by n_heads).
  explicit MultiHeadAttention(const BlockConfig& c)
      : qkv_((c.validate(), c.d_model), 3 * c.d_model),
        out_(c.d_model, c.d_model),
        n_heads_(c.n_heads),
        causal_(c.causal) {}

  Index d_model() const { return out_.out_features(); }
  Index n_heads() const { return n_heads_; }
  Index d_head() const { return d_model() / n_heads_; }
  bool causal() const { return causal_; }
  Index parameter_count() const { return qkv_.parameter_count() + out_.parameter_count(); }

  const Linear<T>& qkv() const { return qkv_; }
  Linear<T>& qkv() { return qkv_; }
  const Linear<T>& out() const { return out_; }
  Linear<T>& out() { return out_; }

  /// y = residual + Attention(x). x, residual, y (batch.tokens(), d_model); y distinct from x,
  /// residual either y or not overlapping it (x may be the residual).
  void forward_residual(ConstMatrixRef<T> x, const Batch& batch, ConstMatrixRef<T> residual,
                        MatrixRef<T> y, Workspace<T>& ws, int threads) const {
    // (tokens, 3 * d_model)
    qkv_.forward(x, ws.qkv, threads, ws.gemm);
    // (tokens, d_model)
    ops::attention<T>(ws.qkv, batch, n_heads_, causal_, ws.context, ws.scores, threads);
    out_.forward_residual(ws.context, residual, y, threads, ws.gemm);
  }
  /// One thread's share of forward_residual (see RowShare): x, residual, y are the thread's rows
  /// (share.rows(), d_model); ws is the forward's workspace, whose qkv and context every thread of
  /// the team fills and reads. Waits for the team twice: before writing its rows of Q, K, V (no
  /// thread still reads the previous layer's), and before reading every row's keys and values.
  void forward_residual(ConstMatrixRef<T> x, const Batch& batch, ConstMatrixRef<T> residual,
                        MatrixRef<T> y, Workspace<T>& ws, const RowShare<T>& share) const {
    Workspace<T>& own = *share.own;
    if (own.scores.empty()) own.scores.resize(1);
    shareformer::detail::barrier();
    qkv_.forward(x, share.of(ws.qkv), 1, own.gemm);
    shareformer::detail::barrier();
    ops::attention_rows<T>(ws.qkv, batch, n_heads_, causal_, ws.context, own.scores.front(),
                           share.begin, share.end);
    out_.forward_residual(share.of(ws.context), residual, y, 1, own.gemm);
  }
  /// y += Attention(x). x, y (batch.tokens(), d_model), distinct.
  void forward_accumulate(ConstMatrixRef<T> x, const Batch& batch, MatrixRef<T> y, Workspace<T>& ws,
                          int threads) const {
    forward_residual(x, batch, y, y, ws, threads);
  }

  /// Calls f on each Linear: qkv, then out.
  template <typename F>
  void for_each_linear(F&& f) {
    f(qkv_);
    f(out_);
  }
  template <typename F>
  void for_each_linear(F&& f) const {
    f(qkv_);
    f(out_);
  }

  template <typename Rng>
  void randomize(Rng& rng, double stddev, double bias_stddev) {
    qkv_.randomize(rng, stddev, bias_stddev);
    out_.randomize(rng, stddev, bias_stddev);
  }

 private:
  Linear<T> qkv_;
  Linear<T> out_;
  Index n_heads_ = 1;
  bool causal_ = false;
};

namespace detail {
/// Applies a residual branch with its LayerNorm in place on h (tokens, d_model): post-LN
/// h = LN(h + f(h)), pre-LN h = h + f(LN(h)). branch(input, residual, out) must write
/// out = residual + f(input). Post-LN sums into ws.normed and normalises back into h; pre-LN
/// normalises into ws.normed and sums into h: no pass over h only to copy it.
template <typename T, typename Branch>
void residual_sublayer(NormPlacement placement, const LayerNorm<T>& norm, MatrixRef<T> h,
                       MatrixRef<T> normed, int threads, Branch&& branch) {
  if (placement == NormPlacement::Post) {
    branch(h, h, normed);
    norm.forward(normed, h, threads);
  } else {
    norm.forward(h, normed, threads);
    branch(normed, h, h);
  }
}
template <typename T, typename Branch>
void residual_sublayer(NormPlacement placement, const LayerNorm<T>& norm, MatrixRef<T> h,
                       Workspace<T>& ws, int threads, Branch&& branch) {
  if (ws.normed.rows() != h.rows() || ws.normed.cols() != h.cols())
    ws.normed.resize(h.rows(), h.cols());
  residual_sublayer<T>(placement, norm, h, ws.normed, threads, branch);
}
}  // namespace detail

/// The attention sub-layer: attention with the LayerNorm that closes it (post-LN) or opens it
/// (pre-LN). The unit that SharedAttention shares.
template <typename T>
class AttentionSublayer {
 public:
  AttentionSublayer() = default;
  explicit AttentionSublayer(const BlockConfig& c)
      : attention_(c), norm_(c.d_model, c.eps), placement_(c.norm) {}

  Index parameter_count() const { return attention_.parameter_count() + norm_.parameter_count(); }
  NormPlacement placement() const { return placement_; }

  const MultiHeadAttention<T>& attention() const { return attention_; }
  MultiHeadAttention<T>& attention() { return attention_; }
  const LayerNorm<T>& norm() const { return norm_; }
  LayerNorm<T>& norm() { return norm_; }

  /// Applies the sub-layer in place on h (batch.tokens(), d_model).
  void forward(MatrixRef<T> h, const Batch& batch, Workspace<T>& ws, int threads) const {
    detail::residual_sublayer<T>(
        placement_, norm_, h, ws, threads,
        [&](ConstMatrixRef<T> in, ConstMatrixRef<T> residual, MatrixRef<T> out) {
          attention_.forward_residual(in, batch, residual, out, ws, threads);
        });
  }

  /// One thread's share of forward (see RowShare): h is the whole (batch.tokens(), d_model)
  /// activation, of which the thread updates its rows; ws is the forward's workspace (prepared).
  void forward(MatrixRef<T> h, const Batch& batch, Workspace<T>& ws,
               const RowShare<T>& share) const {
    detail::residual_sublayer<T>(
        placement_, norm_, share.of(h), share.of(ws.normed), 1,
        [&](ConstMatrixRef<T> in, ConstMatrixRef<T> residual, MatrixRef<T> out) {
          attention_.forward_residual(in, batch, residual, out, ws, share);
        });
  }

  /// Calls f on each Linear.
  template <typename F>
  void for_each_linear(F&& f) {
    attention_.for_each_linear(f);
  }
  template <typename F>
  void for_each_linear(F&& f) const {
    attention_.for_each_linear(f);
  }

  template <typename Rng>
  void randomize(Rng& rng, double stddev, double bias_stddev, double norm_stddev) {
    attention_.randomize(rng, stddev, bias_stddev);
    norm_.randomize(rng, norm_stddev);
  }

 private:
  MultiHeadAttention<T> attention_;
  LayerNorm<T> norm_;
  NormPlacement placement_ = NormPlacement::Post;
};

}  // namespace shareformer
