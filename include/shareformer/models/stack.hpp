// SPDX-License-Identifier: MIT
// Stack<Policy, T>: n_layers transformer layers whose sub-layers are shared as the policy says.
#pragma once

#include <shareformer/core/batch.hpp>
#include <shareformer/core/config.hpp>
#include <shareformer/core/error.hpp>
#include <shareformer/core/parallel.hpp>
#include <shareformer/count/accounting.hpp>
#include <shareformer/layers/attention.hpp>
#include <shareformer/layers/feed_forward.hpp>
#include <shareformer/layers/layer_norm.hpp>
#include <shareformer/layers/transformer_block.hpp>
#include <shareformer/layers/workspace.hpp>
#include <shareformer/sharing/policies.hpp>

#include <algorithm>
#include <random>
#include <type_traits>
#include <utility>
#include <vector>

namespace shareformer {

/// A stack of n_layers transformer layers. It owns the distinct attention and FFN sub-layers the
/// policy asks for; layer l runs attention slot plan().attention[l] and FFN slot plan().ffn[l], so
/// shared sub-layers are one object, never a copy. `forward` is const and re-entrant.
template <typename Policy, typename T = float>
class Stack {
  static_assert(is_sharing_policy_v<Policy>,
                "Stack<Policy, T>: Policy must be a sharing policy (Unshared, SharedFfn, "
                "SharedAttention, SharedAll, Grouped<G, K>, Sequence<M>, Cycle<M>, CycleRev<M>, "
                "Repeat<K> or LayerMap): a type with `SlotPlan plan(Index n_layers) const`");
  static_assert(std::is_same_v<T, float> || std::is_same_v<T, double>,
                "Stack<Policy, T>: T must be float or double");

 public:
  using Scalar = T;
  using PolicyType = Policy;

  /// n_layers layers with zero weights (LayerNorm gains 1). Throws ConfigError on an invalid config
  /// or a policy that cannot lay out n_layers.
  Stack(const BlockConfig& config, Index n_layers, Policy policy = Policy{})
      : config_((config.validate(), config)),
        policy_(std::move(policy)),
        plan_(policy_.plan(n_layers)),
        attention_(static_cast<std::size_t>(plan_.attention_slots), AttentionSublayer<T>(config_)),
        ffn_(static_cast<std::size_t>(plan_.ffn_slots), FfnSublayer<T>(config_)) {
    if (config_.has_final_norm()) final_norm_ = LayerNorm<T>(config_.d_model, config_.eps);
  }

  const BlockConfig& config() const { return config_; }
  const Policy& policy() const { return policy_; }
  const SlotPlan& plan() const { return plan_; }
  Index n_layers() const { return plan_.n_layers(); }

  /// The attention / FFN sub-layer that layer l runs (the same object for layers sharing it).
  const AttentionSublayer<T>& attention(Index layer) const {
    return attention_.at(slot(plan_.attention, layer));
  }
  AttentionSublayer<T>& attention(Index layer) {
    return attention_.at(slot(plan_.attention, layer));
  }
  const FfnSublayer<T>& ffn(Index layer) const { return ffn_.at(slot(plan_.ffn, layer)); }
  FfnSublayer<T>& ffn(Index layer) { return ffn_.at(slot(plan_.ffn, layer)); }

  /// The distinct sub-layers, in slot order.
  const std::vector<AttentionSublayer<T>>& attention_slots() const { return attention_; }
  std::vector<AttentionSublayer<T>>& attention_slots() { return attention_; }
  const std::vector<FfnSublayer<T>>& ffn_slots() const { return ffn_; }
  std::vector<FfnSublayer<T>>& ffn_slots() { return ffn_; }

  /// The final LayerNorm of a pre-LN stack (config().has_final_norm()); size 0 otherwise.
  const LayerNorm<T>& final_norm() const { return final_norm_; }
  LayerNorm<T>& final_norm() { return final_norm_; }

  /// Unique parameters: each distinct tensor once.
  Index parameter_count() const { return parameters().total(); }
  /// Unique parameters by component.
  count::ParameterCount parameters() const {
    return count::stack(config_, plan_.attention_slots, plan_.ffn_slots);
  }
  /// Parameters the same stack would have with no sharing.
  Index unshared_parameter_count() const {
    return count::stack(config_, n_layers(), n_layers()).total();
  }
  /// Bytes of the unique weights.
  std::int64_t weight_bytes() const { return count::weight_bytes<T>(parameter_count()); }
  /// FLOPs of one forward over `batch` sequences of `seq_len` tokens (independent of sharing).
  count::FlopCount flops(Index batch, Index seq_len) const {
    return count::forward_flops(config_, n_layers(), batch, seq_len);
  }

  /// h = Stack(h) in place. h (batch.tokens(), d_model); ws is reused across calls; threads = 0
  /// means hardware_threads(). Throws ShapeError on a bad shape.
  /// The threads follow detail::threading_plan: with many tokens each thread keeps its own
  /// sequences (Groups) or rows (Shares) for the whole forward; with few, every step is split.
  void forward(MatrixRef<T> h, const Batch& batch, Workspace<T>& ws, int threads = 0) const {
    detail::check_input<T>("Stack", h, batch, config_.d_model);
    threads = detail::resolve_threads(threads);
    switch (detail::threading_plan(batch.batch(), batch.seq_len(), threads)) {
      case detail::ThreadPlan::Groups: return forward_groups(h, batch, ws, threads);
      case detail::ThreadPlan::Shares: return forward_shares(h, batch, ws, threads);
      case detail::ThreadPlan::Steps: break;
    }
    forward_layers(h, batch, ws, threads);
  }

  /// Returns Stack(x). x (batch.tokens(), d_model), padding per sequence as in `batch`.
  RowMatrix<T> forward(ConstMatrixRef<T> x, const Batch& batch, int threads = 0) const {
    detail::check_input<T>("Stack", x, batch, config_.d_model);
    RowMatrix<T> h = x;
    Workspace<T> ws;
    forward(h, batch, ws, threads);
    return h;
  }

  /// Calls f on each distinct Linear once (a shared one once, not per layer), in slot order.
  template <typename F>
  void for_each_linear(F&& f) {
    for (auto& a : attention_) a.for_each_linear(f);
    for (auto& x : ffn_) x.for_each_linear(f);
  }
  template <typename F>
  void for_each_linear(F&& f) const {
    for (const auto& a : attention_) a.for_each_linear(f);
    for (const auto& x : ffn_) x.for_each_linear(f);
  }

  /// Linear::pack_weights on every distinct Linear: each weight also kept packed in the order the
  /// product kernel streams it (faster when the weights do not stay in cache; costs a copy of the
  /// weights). Call again after changing weights through mutable accessors, which drop the copies.
  void pack_weights() {
    for_each_linear([](Linear<T>& linear) { linear.pack_weights(); });
  }

  /// Linear::use_bf16_weights on every distinct Linear: each weight rounded to bfloat16 once, and
  /// products over few tokens stream half the bytes. float only.
  void use_bf16_weights() {
    for_each_linear([](Linear<T>& linear) { linear.use_bf16_weights(); });
  }

  /// Linear::use_bf16_products on every distinct Linear: every product in bfloat16 with float
  /// sums (weights and activations rounded to bfloat16), on AVX512-BF16's dot products where the
  /// build has them (ops::has_bf16_dot). A different precision from float. float only.
  void use_bf16_products() {
    for_each_linear([](Linear<T>& linear) { linear.use_bf16_products(); });
  }

  /// Random weights N(0, stddev^2) (biases and LayerNorm perturbations too, with their own
  /// spreads), deterministic for a seed: every distinct sub-layer drawn once, in slot order.
  void randomize(std::uint64_t seed, double stddev = 0.02, double bias_stddev = 0.02,
                 double norm_stddev = 0.0) {
    std::mt19937_64 rng(seed);
    for (auto& a : attention_) a.randomize(rng, stddev, bias_stddev, norm_stddev);
    for (auto& f : ffn_) f.randomize(rng, stddev, bias_stddev, norm_stddev);
    if (config_.has_final_norm()) final_norm_.randomize(rng, norm_stddev);
  }

 private:
  // Calls f(attention sub-layer, FFN sub-layer) for each layer in order.
  template <typename F>
  void for_each_layer(F&& f) const {
    for (Index l = 0; l < n_layers(); ++l)
      f(attention_[static_cast<std::size_t>(plan_.attention[static_cast<std::size_t>(l)])],
        ffn_[static_cast<std::size_t>(plan_.ffn[static_cast<std::size_t>(l)])]);
  }

  void forward_layers(MatrixRef<T> h, const Batch& batch, Workspace<T>& ws, int threads) const {
    ws.prepare(batch.tokens(), config_);
    for_each_layer([&](const AttentionSublayer<T>& attention, const FfnSublayer<T>& ffn) {
      attention.forward(h, batch, ws, threads);
      ffn.forward(h, ws, threads);
    });
    if (config_.has_final_norm()) final_norm_.forward(h, threads);
  }

  // Thread t of n owns rows [units * t / n, units * (t + 1) / n) in units of one register tile.
  // Every scratch buffer the threads use is sized before the team: an allocation failing inside
  // it could not be reported (see detail::parallel_team). (Should OpenMP give a smaller team than
  // asked, its threads own more rows and grow their bfloat16 buffer themselves: still correct.)
  void forward_shares(MatrixRef<T> h, const Batch& batch, Workspace<T>& ws, int threads) const {
    const Index tokens = batch.tokens(), unit = ops::detail::small_gemm_rows;
    const Index units = (tokens + unit - 1) / unit,
                most_rows = (units + threads - 1) / threads * unit;
    Index bf16_rows = 0;
    for_each_linear([&](const Linear<T>& linear) {
      bf16_rows = std::max(bf16_rows, linear.bf16_scratch(most_rows));
    });
    ws.prepare(tokens, config_);
    ws.prepare_groups(threads);
    for (auto& own : ws.group_workspaces) {
      if (own.scores.empty()) own.scores.resize(1);
      ops::detail::size_attention_buffer(own.scores.front(), batch.seq_len(), config_.d_head());
      if (bf16_rows > 0) own.gemm.bf16_rows(bf16_rows);
    }
    detail::parallel_team(threads, [&](int t, int n) {
      const RowShare<T> share{std::min(tokens, units * t / n * unit),
                              std::min(tokens, units * (t + 1) / n * unit),
                              &ws.group_workspaces[static_cast<std::size_t>(t)]};
      for_each_layer([&](const AttentionSublayer<T>& attention, const FfnSublayer<T>& ffn) {
        attention.forward(h, batch, ws, share);
        ffn.forward(h, ws, share);
      });
      if (config_.has_final_norm()) final_norm_.forward(share.of(h), 1);
    });
  }

  // Group g holds sequences [g * per, (g + 1) * per): its rows of h, its own workspace and batch.
  void forward_groups(MatrixRef<T> h, const Batch& batch, Workspace<T>& ws, int groups) const {
    const Index per = batch.batch() / groups, rows = per * batch.seq_len();
    ws.prepare_groups(groups);
    for (int g = 0; g < groups; ++g) {
      const auto i = static_cast<std::size_t>(g);
      batch.slice(g * per, per, ws.group_batches[i]);
      ws.group_workspaces[i].prepare(rows, config_);
    }
    detail::parallel_items(groups, groups, [&](Index g, int) {
      const auto i = static_cast<std::size_t>(g);
      forward_layers(h.middleRows(g * rows, rows), ws.group_batches[i], ws.group_workspaces[i], 1);
    });
  }

  static std::size_t slot(const std::vector<Index>& table, Index layer) {
    if (layer < 0 || layer >= static_cast<Index>(table.size()))
      throw ConfigError("Stack: layer " + detail::to_string(layer) + " is out of range 0.." +
                        std::to_string(table.size() - 1));
    return static_cast<std::size_t>(table[static_cast<std::size_t>(layer)]);
  }

  BlockConfig config_;
  Policy policy_;
  SlotPlan plan_;
  std::vector<AttentionSublayer<T>> attention_;
  std::vector<FfnSublayer<T>> ffn_;
  LayerNorm<T> final_norm_;
};

}  // namespace shareformer
