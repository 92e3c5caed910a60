// SPDX-License-Identifier: MIT
// FeedForward (Linear, activation, Linear) and FfnSublayer (feed-forward + its LayerNorm).
#pragma once

#include <shareformer/core/config.hpp>
#include <shareformer/layers/attention.hpp>
#include <shareformer/layers/layer_norm.hpp>
#include <shareformer/layers/linear.hpp>
#include <shareformer/layers/workspace.hpp>
#include <shareformer/ops/activation.hpp>

namespace shareformer {

/// Position-wise feed-forward: act(x W_in + b_in) W_out + b_out, W_in (d_model, d_ff),
/// W_out (d_ff, d_model).
template <typename T>
class FeedForward {
 public:
  FeedForward() = default;
  /// Zero weights. Throws ConfigError when c is invalid.
  explicit FeedForward(const BlockConfig& c)
      : in_((c.validate(), c.d_model), c.d_ff),
        out_(c.d_ff, c.d_model),
        activation_(c.activation) {}

  Index d_model() const { return in_.in_features(); }
  Index d_ff() const { return in_.out_features(); }
  Activation activation() const { return activation_; }
  Index parameter_count() const { return in_.parameter_count() + out_.parameter_count(); }

  const Linear<T>& in() const { return in_; }
  Linear<T>& in() { return in_; }
  const Linear<T>& out() const { return out_; }
  Linear<T>& out() { return out_; }

  /// y = residual + FFN(x). x, residual, y (tokens, d_model); y distinct from x, residual either
  /// y or not overlapping it (x may be the residual).
  void forward_residual(ConstMatrixRef<T> x, ConstMatrixRef<T> residual, MatrixRef<T> y,
                        Workspace<T>& ws, int threads) const {
    // (tokens, d_ff)
    in_.forward_activate(x, activation_, ws.inner, threads, ws.gemm);
    out_.forward_residual(ws.inner, residual, y, threads, ws.gemm);
  }
  /// One thread's share of forward_residual (see RowShare): x, residual, y are the thread's rows;
  /// the hidden activations go to its rows of ws.inner.
  void forward_residual(ConstMatrixRef<T> x, ConstMatrixRef<T> residual, MatrixRef<T> y,
                        Workspace<T>& ws, const RowShare<T>& share) const {
    auto inner = share.of(ws.inner);
    in_.forward_activate(x, activation_, inner, 1, share.own->gemm);
    out_.forward_residual(inner, residual, y, 1, share.own->gemm);
  }
  /// y += FFN(x). x, y (tokens, d_model), distinct.
  void forward_accumulate(ConstMatrixRef<T> x, MatrixRef<T> y, Workspace<T>& ws,
                          int threads) const {
    forward_residual(x, y, y, ws, threads);
  }

  /// Calls f on each Linear: in, then out.
  template <typename F>
  void for_each_linear(F&& f) {
    f(in_);
    f(out_);
  }
  template <typename F>
  void for_each_linear(F&& f) const {
    f(in_);
    f(out_);
  }

  template <typename Rng>
  void randomize(Rng& rng, double stddev, double bias_stddev) {
    in_.randomize(rng, stddev, bias_stddev);
    out_.randomize(rng, stddev, bias_stddev);
  }

 private:
  Linear<T> in_;
  Linear<T> out_;
  Activation activation_ = Activation::GeluErf;
};

/// The FFN sub-layer: feed-forward with the LayerNorm that closes it (post-LN) or opens it
/// (pre-LN). The unit that SharedFfn shares.
template <typename T>
class FfnSublayer {
 public:
  FfnSublayer() = default;
  explicit FfnSublayer(const BlockConfig& c)
      : ffn_(c), norm_(c.d_model, c.eps), placement_(c.norm) {}

  Index parameter_count() const { return ffn_.parameter_count() + norm_.parameter_count(); }
  NormPlacement placement() const { return placement_; }

  const FeedForward<T>& ffn() const { return ffn_; }
  FeedForward<T>& ffn() { return ffn_; }
  const LayerNorm<T>& norm() const { return norm_; }
  LayerNorm<T>& norm() { return norm_; }

  /// Applies the sub-layer in place on h (tokens, d_model).
  void forward(MatrixRef<T> h, Workspace<T>& ws, int threads) const {
    detail::residual_sublayer<T>(
        placement_, norm_, h, ws, threads,
        [&](ConstMatrixRef<T> in, ConstMatrixRef<T> residual, MatrixRef<T> out) {
          ffn_.forward_residual(in, residual, out, ws, threads);
        });
  }

  /// One thread's share of forward (see RowShare): the thread updates its rows of h, reading no
  /// other row.
  void forward(MatrixRef<T> h, Workspace<T>& ws, const RowShare<T>& share) const {
    detail::residual_sublayer<T>(
        placement_, norm_, share.of(h), share.of(ws.normed), 1,
        [&](ConstMatrixRef<T> in, ConstMatrixRef<T> residual, MatrixRef<T> out) {
          ffn_.forward_residual(in, residual, out, ws, share);
        });
  }

  /// Calls f on each Linear.
  template <typename F>
  void for_each_linear(F&& f) {
    ffn_.for_each_linear(f);
  }
  template <typename F>
  void for_each_linear(F&& f) const {
    ffn_.for_each_linear(f);
  }

  template <typename Rng>
  void randomize(Rng& rng, double stddev, double bias_stddev, double norm_stddev) {
    ffn_.randomize(rng, stddev, bias_stddev);
    norm_.randomize(rng, norm_stddev);
  }

 private:
  FeedForward<T> ffn_;
  LayerNorm<T> norm_;
  NormPlacement placement_ = NormPlacement::Post;
};

}  // namespace shareformer
