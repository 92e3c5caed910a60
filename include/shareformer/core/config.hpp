// SPDX-License-Identifier: MIT
// BlockConfig: the hyper-parameters of one transformer block, and the enums it uses.
#pragma once

#include <shareformer/core/error.hpp>
#include <shareformer/core/types.hpp>

#include <string>

namespace shareformer {

/// Non-linearity of the feed-forward sub-layer.
enum class Activation {
  GeluErf,   ///< 0.5 x (1 + erf(x / sqrt 2)): PyTorch's and Hugging Face's "gelu"
  GeluTanh,  ///< tanh approximation: Hugging Face's "gelu_new" / "gelu_pytorch_tanh"
  Relu,      ///< max(x, 0)
};

/// Where each LayerNorm sits relative to its residual connection.
enum class NormPlacement {
  Post,  ///< x = LN(x + f(x)): BERT, ALBERT, the seed's code (the default)
  Pre,   ///< x = x + f(LN(x)), with an optional final LayerNorm after the stack
};

inline const char* to_string(Activation a) {
  switch (a) {
    case Activation::GeluErf: return "gelu";
    case Activation::GeluTanh: return "gelu_tanh";
    case Activation::Relu: return "relu";
  }
  return "?";
}

inline const char* to_string(NormPlacement p) { return p == NormPlacement::Post ? "post" : "pre"; }

/// Hyper-parameters of one transformer block (attention + FFN sub-layers).
struct BlockConfig {
  Index d_model = 512;  ///< hidden size
  Index n_heads = 8;    ///< attention heads; d_head = d_model / n_heads
  Index d_ff = 2048;    ///< inner size of the feed-forward sub-layer
  Activation activation = Activation::GeluErf;
  NormPlacement norm = NormPlacement::Post;
  double eps = 1e-5;       ///< LayerNorm epsilon
  bool causal = false;     ///< mask future keys in self-attention
  bool final_norm = true;  ///< pre-LN only: a LayerNorm after the last layer

  /// Size of one attention head.
  Index d_head() const { return n_heads > 0 ? d_model / n_heads : 0; }

  /// Throws ConfigError naming the first invalid field.
  void validate() const {
    if (d_model <= 0)
      throw ConfigError("BlockConfig: d_model must be positive, got " + detail::to_string(d_model));
    if (n_heads <= 0)
      throw ConfigError("BlockConfig: n_heads must be positive, got " + detail::to_string(n_heads));
    if (d_ff <= 0)
      throw ConfigError("BlockConfig: d_ff must be positive, got " + detail::to_string(d_ff));
    if (d_model % n_heads != 0)
      throw ConfigError("MultiHeadAttention: d_model (" + detail::to_string(d_model) +
                        ") is not divisible by n_heads (" + detail::to_string(n_heads) + ")");
    if (!(eps > 0.0))
      throw ConfigError("BlockConfig: eps must be positive, got " + std::to_string(eps));
  }

  /// Whether the stack built from this config ends with its own LayerNorm.
  bool has_final_norm() const { return norm == NormPlacement::Pre && final_norm; }
};

}  // namespace shareformer
