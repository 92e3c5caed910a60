// SPDX-License-Identifier: MIT
// The four named sharing policies as the CLI spells them, and their slot counts.
#pragma once

#include <array>
#include <shareformer/sharing/policies.hpp>
#include <string>

namespace shareformer::cli {

/// The CLI's policy names, in table order; Stack<Unshared>, <SharedFfn>, <SharedAttention>,
/// <SharedAll>.
inline constexpr std::array<const char*, 4> kPolicyNames = {"none", "ffn", "attention", "all"};

/// The slot plan of policy `name` (one of kPolicyNames) for n_layers block applications.
inline SlotPlan policy_plan(const std::string& name, Index n_layers) {
  if (name == Unshared::name()) return Unshared::plan(n_layers);
  if (name == SharedFfn::name()) return SharedFfn::plan(n_layers);
  if (name == SharedAttention::name()) return SharedAttention::plan(n_layers);
  if (name == SharedAll::name()) return SharedAll::plan(n_layers);
  throw ConfigError("unknown sharing policy '" + name + "' (expected none, ffn, attention or all)");
}

}  // namespace shareformer::cli
