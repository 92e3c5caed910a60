// SPDX-License-Identifier: MIT
// Sharing policies: for n_layers, how many distinct attention / FFN sub-layers exist and which one
// layer l reads.
#pragma once

#include <shareformer/core/error.hpp>
#include <shareformer/core/types.hpp>

#include <string>
#include <type_traits>
#include <utility>
#include <vector>

namespace shareformer {

/// The layer -> slot table a policy produces: layer l runs attention slot `attention[l]` and FFN
/// slot `ffn[l]`; slots are numbered densely from 0.
struct SlotPlan {
  Index attention_slots = 0;
  Index ffn_slots = 0;
  std::vector<Index> attention;
  std::vector<Index> ffn;

  Index n_layers() const { return static_cast<Index>(attention.size()); }
};

namespace detail {

inline void check_layers(const std::string& policy, Index n_layers) {
  if (n_layers < 1)
    throw ConfigError(policy + ": n_layers must be at least 1, got " + to_string(n_layers));
}

inline void check_group(const std::string& policy, const char* what, Index m, Index n_layers,
                        bool divides) {
  check_layers(policy, n_layers);
  if (m < 1) throw ConfigError(policy + ": " + what + " must be at least 1, got " + to_string(m));
  if (m > n_layers)
    throw ConfigError(policy + ": " + what + " (" + to_string(m) + ") exceeds n_layers (" +
                      to_string(n_layers) + ")");
  if (divides && n_layers % m != 0)
    throw ConfigError(policy + ": n_layers (" + to_string(n_layers) + ") is not divisible by " +
                      what + " (" + to_string(m) + ")");
}

/// A plan where attention and FFN share the same slot function: whole blocks are shared.
template <typename SlotOf>
SlotPlan block_plan(Index n_layers, Index slots, SlotOf&& slot_of) {
  SlotPlan plan{slots, slots, {}, {}};
  for (Index l = 0; l < n_layers; ++l) {
    plan.attention.push_back(slot_of(l));
    plan.ffn.push_back(slot_of(l));
  }
  return plan;
}

inline SlotPlan split_plan(Index n_layers, bool share_attention, bool share_ffn) {
  SlotPlan plan{share_attention ? 1 : n_layers, share_ffn ? 1 : n_layers, {}, {}};
  for (Index l = 0; l < n_layers; ++l) {
    plan.attention.push_back(share_attention ? 0 : l);
    plan.ffn.push_back(share_ffn ? 0 : l);
  }
  return plan;
}

}  // namespace detail

/// Every layer has its own attention and FFN (BERT).
struct Unshared {
  static std::string name() { return "none"; }
  static SlotPlan plan(Index n_layers) {
    detail::check_layers(name(), n_layers);
    return detail::split_plan(n_layers, false, false);
  }
};

/// One FFN sub-layer shared by every layer; attention per layer.
struct SharedFfn {
  static std::string name() { return "ffn"; }
  static SlotPlan plan(Index n_layers) {
    detail::check_layers(name(), n_layers);
    return detail::split_plan(n_layers, false, true);
  }
};

/// One attention sub-layer shared by every layer; FFN per layer.
struct SharedAttention {
  static std::string name() { return "attention"; }
  static SlotPlan plan(Index n_layers) {
    detail::check_layers(name(), n_layers);
    return detail::split_plan(n_layers, true, false);
  }
};

/// One block applied n_layers times (ALBERT).
struct SharedAll {
  static std::string name() { return "all"; }
  static SlotPlan plan(Index n_layers) {
    detail::check_layers(name(), n_layers);
    return detail::split_plan(n_layers, true, true);
  }
};
using Albert = SharedAll;

/// The plan of Grouped<G, K> with G and K known at run time (ALBERT's config.json):
/// n_layers = L * K block applications; outer layer i < L runs group floor(i / (L / G)), all K of
/// its inner blocks in order. Throws ConfigError unless K | n_layers and G | L.
inline SlotPlan grouped_plan(Index n_layers, Index groups, Index inner) {
  const std::string name = "grouped:" + detail::to_string(groups) + "x" + detail::to_string(inner);
  detail::check_group(name, "inner_group_num", inner, n_layers, true);
  const Index outer = n_layers / inner;
  detail::check_group(name, "num_hidden_groups", groups, outer, true);
  return detail::block_plan(n_layers, groups * inner, [&](Index l) {
    return (l / inner) / (outer / groups) * inner + l % inner;
  });
}

/// ALBERT's groups: G groups of K distinct blocks. A stack of n_layers = L * K block applications
/// runs, for outer layer i < L, group floor(i / (L / G)) with its K inner blocks in order.
/// Requires K | n_layers and G | L.
template <Index G, Index K = 1>
struct Grouped {
  static_assert(G >= 1 && K >= 1, "Grouped<G, K>: G and K must be at least 1");
  static std::string name() {
    return "grouped:" + detail::to_string(G) + "x" + detail::to_string(K);
  }
  static SlotPlan plan(Index n_layers) { return grouped_plan(n_layers, G, K); }
};

/// Takase & Kiyono's SEQUENCE: M blocks, each used by N / M consecutive layers;
/// f(i) = floor(i / (N / M)).
template <Index M>
struct Sequence {
  static std::string name() { return "sequence:" + detail::to_string(M); }
  static SlotPlan plan(Index n_layers) {
    detail::check_group(name(), "M", M, n_layers, true);
    return detail::block_plan(n_layers, M, [&](Index l) { return l / (n_layers / M); });
  }
};

/// Takase & Kiyono's CYCLE: M blocks used in turn; f(i) = i mod M.
template <Index M>
struct Cycle {
  static std::string name() { return "cycle:" + detail::to_string(M); }
  static SlotPlan plan(Index n_layers) {
    detail::check_group(name(), "M", M, n_layers, false);
    return detail::block_plan(n_layers, M, [](Index l) { return l % M; });
  }
};

/// Takase & Kiyono's CYCLE (REV): i mod M for the first (ceil(N / M) - 1) * M layers, then the
/// remaining layers in reverse, M - 1 - (i mod M). N = 6, M = 3 gives 0 1 2 2 1 0.
template <Index M>
struct CycleRev {
  static std::string name() { return "cycle_rev:" + detail::to_string(M); }
  static SlotPlan plan(Index n_layers) {
    detail::check_group(name(), "M", M, n_layers, false);
    const Index forward_layers = ((n_layers + M - 1) / M - 1) * M;
    return detail::block_plan(n_layers, M,
                              [&](Index l) { return l < forward_layers ? l % M : M - 1 - l % M; });
  }
};

/// MobileLLM's immediate block-wise repeat: each of N / K blocks runs K times in a row.
template <Index K>
struct Repeat {
  static std::string name() { return "repeat:" + detail::to_string(K); }
  static SlotPlan plan(Index n_layers) {
    detail::check_group(name(), "K", K, n_layers, true);
    return detail::block_plan(n_layers, n_layers / K, [](Index l) { return l / K; });
  }
};

/// A layer -> slot table chosen at run time (e.g. read from a file). Every slot from 0 to the
/// largest must be used by some layer.
class LayerMap {
 public:
  LayerMap() = default;
  /// attention[l] and ffn[l] are the slots of layer l. Throws ConfigError on unequal lengths, a
  /// negative slot or an unused slot.
  LayerMap(std::vector<Index> attention, std::vector<Index> ffn)
      : attention_(std::move(attention)), ffn_(std::move(ffn)) {
    if (attention_.size() != ffn_.size())
      throw ConfigError("LayerMap: " + std::to_string(attention_.size()) + " attention slots but " +
                        std::to_string(ffn_.size()) + " FFN slots");
    attention_slots_ = count_slots("attention", attention_);
    ffn_slots_ = count_slots("ffn", ffn_);
  }
  /// Whole blocks: layer l runs block blocks[l].
  static LayerMap blocks(const std::vector<Index>& blocks) { return LayerMap(blocks, blocks); }
  /// The plan of any other policy, as a runtime table.
  static LayerMap from_plan(const SlotPlan& plan) { return LayerMap(plan.attention, plan.ffn); }

  static std::string name() { return "map"; }
  Index n_layers() const { return static_cast<Index>(attention_.size()); }
  const std::vector<Index>& attention() const { return attention_; }
  const std::vector<Index>& ffn() const { return ffn_; }

  /// Throws ConfigError unless n_layers equals the table's length.
  SlotPlan plan(Index n_layers) const {
    detail::check_layers(name(), n_layers);
    if (n_layers != this->n_layers())
      throw ConfigError("LayerMap: the table has " + detail::to_string(this->n_layers()) +
                        " layers, the stack " + detail::to_string(n_layers));
    return SlotPlan{attention_slots_, ffn_slots_, attention_, ffn_};
  }

 private:
  static Index count_slots(const char* what, const std::vector<Index>& slots) {
    Index max = -1;
    for (std::size_t l = 0; l < slots.size(); ++l) {
      if (slots[l] < 0)
        throw ConfigError(std::string("LayerMap: ") + what + " slot of layer " + std::to_string(l) +
                          " is negative (" + detail::to_string(slots[l]) + ")");
      max = std::max(max, slots[l]);
    }
    std::vector<bool> used(static_cast<std::size_t>(max + 1), false);
    for (Index s : slots) used[static_cast<std::size_t>(s)] = true;
    for (std::size_t s = 0; s < used.size(); ++s)
      if (!used[s])
        throw ConfigError(std::string("LayerMap: ") + what + " slot " + std::to_string(s) +
                          " is used by no layer (slots must be numbered 0.." +
                          detail::to_string(max) + " without gaps)");
    return max + 1;
  }

  std::vector<Index> attention_;
  std::vector<Index> ffn_;
  Index attention_slots_ = 0;
  Index ffn_slots_ = 0;
};

/// True for types usable as Stack's Policy: `plan(Index)` on a const instance yields a SlotPlan.
template <typename P, typename = void>
struct is_sharing_policy : std::false_type {};
template <typename P>
struct is_sharing_policy<
    P, std::enable_if_t<std::is_same_v<decltype(std::declval<const P&>().plan(Index{})), SlotPlan>>>
    : std::true_type {};
template <typename P>
inline constexpr bool is_sharing_policy_v = is_sharing_policy<P>::value;

}  // namespace shareformer
