// SPDX-License-Identifier: MIT
// Analytic accounting: parameters, weight bytes and FLOPs of blocks and stacks, per component.
//
// Parameters (d = d_model, f = d_ff):
//   attention sub-layer: 4 d^2 + 4 d (fused QKV d x 3d + 3d, output d x d + d)
//                        + 2 d (its LayerNorm)
//   FFN sub-layer:       2 d f + f + d (two Linears) + 2 d (its LayerNorm)
//   a pre-LN stack with a final LayerNorm adds 2 d.
// A stack counts each distinct sub-layer once (unique parameters) and, "as if unshared", once per
// layer; sharing changes the first, never the FLOPs.
//
// FLOPs of one layer for `batch` sequences of `seq_len` tokens, T = batch * seq_len, one
// multiply-add = 2 FLOPs:
//   matmul = 2 T (4 d^2 + 2 d f)          projections: QKV 3d^2, output d^2, FFN 2 d f
//          + 4 batch seq_len^2 d          Q K^T and P V over all heads
//   elementwise (listed apart, approximate): bias adds T (5 d + f), residual adds 2 T d,
//          LayerNorm 2 x 5 T d, activation T f, scale + softmax 5 batch n_heads seq_len^2.
// Padding is not subtracted: a padded batch costs what a full one does.
#pragma once

#include <shareformer/core/config.hpp>
#include <shareformer/core/types.hpp>

#include <cstdint>

namespace shareformer::count {

/// Parameters by component; `norms` holds every LayerNorm (each sub-layer's and the final one).
struct ParameterCount {
  Index attention = 0;
  Index ffn = 0;
  Index norms = 0;

  Index total() const { return attention + ffn + norms; }
  ParameterCount& operator+=(const ParameterCount& o) {
    attention += o.attention;
    ffn += o.ffn;
    norms += o.norms;
    return *this;
  }
};

/// Parameters of one attention sub-layer (its LayerNorm in `norms`).
inline ParameterCount attention_sublayer(const BlockConfig& c) {
  const Index d = c.d_model;
  return {4 * d * d + 4 * d, 0, 2 * d};
}

/// Parameters of one FFN sub-layer (its LayerNorm in `norms`).
inline ParameterCount ffn_sublayer(const BlockConfig& c) {
  const Index d = c.d_model, f = c.d_ff;
  return {0, 2 * d * f + f + d, 2 * d};
}

/// Parameters of one block: one attention and one FFN sub-layer.
inline ParameterCount block(const BlockConfig& c) {
  ParameterCount p = attention_sublayer(c);
  p += ffn_sublayer(c);
  return p;
}

/// Parameters of a stack with the given numbers of distinct sub-layers, final LayerNorm included.
inline ParameterCount stack(const BlockConfig& c, Index attention_slots, Index ffn_slots) {
  ParameterCount p;
  for (Index i = 0; i < attention_slots; ++i) p += attention_sublayer(c);
  for (Index i = 0; i < ffn_slots; ++i) p += ffn_sublayer(c);
  if (c.has_final_norm()) p.norms += 2 * c.d_model;
  return p;
}

/// Bytes of `parameters` weights stored as T.
template <typename T>
std::int64_t weight_bytes(Index parameters) {
  return static_cast<std::int64_t>(parameters) * static_cast<std::int64_t>(sizeof(T));
}

/// Floating-point operations, matmuls and element-wise work kept apart.
struct FlopCount {
  std::int64_t matmul = 0;
  std::int64_t elementwise = 0;

  std::int64_t total() const { return matmul + elementwise; }
};

/// FLOPs of one layer over `batch` sequences of `seq_len` tokens (formula at the top of this file).
inline FlopCount layer_flops(const BlockConfig& c, Index batch, Index seq_len) {
  const std::int64_t d = c.d_model, f = c.d_ff, h = c.n_heads, b = batch, s = seq_len;
  const std::int64_t t = b * s;
  FlopCount flops;
  flops.matmul = 2 * t * (4 * d * d + 2 * d * f) + 4 * b * s * s * d;
  flops.elementwise = t * (5 * d + f) + 2 * t * d + 10 * t * d + t * f + 5 * b * h * s * s;
  return flops;
}

/// FLOPs of a whole stack of n_layers layers (the final LayerNorm's 5 T d included).
inline FlopCount forward_flops(const BlockConfig& c, Index n_layers, Index batch, Index seq_len) {
  const FlopCount layer = layer_flops(c, batch, seq_len);
  FlopCount flops{layer.matmul * n_layers, layer.elementwise * n_layers};
  if (c.has_final_norm())
    flops.elementwise += 5 * static_cast<std::int64_t>(batch) * seq_len * c.d_model;
  return flops;
}

}  // namespace shareformer::count

#include <shareformer/core/encoder_config.hpp>

namespace shareformer::count {

/// Parameters of an encoder outside its blocks: embeddings (word, position, token type, LayerNorm),
/// ALBERT's E -> d_model projection, and the pooler.
struct EncoderExtras {
  Index embeddings = 0;
  Index projection = 0;
  Index pooler = 0;

  Index total() const { return embeddings + projection + pooler; }
};

inline EncoderExtras encoder_extras(const EncoderConfig& c) {
  const Index e = c.embedding_size, h = c.d_model;
  EncoderExtras x;
  x.embeddings = (c.vocab_size + c.max_position_embeddings + c.type_vocab_size) * e + 2 * e;
  x.projection = c.model_type == ModelType::Albert ? e * h + h : 0;
  x.pooler = h * h + h;
  return x;
}

/// Parameters of a whole encoder whose stack has the given numbers of distinct sub-layers; equals
/// PyTorch's sum(p.numel()) over Hugging Face's AlbertModel / BertModel (pooler included).
inline Index encoder_parameters(const EncoderConfig& c, Index attention_slots, Index ffn_slots) {
  return encoder_extras(c).total() + stack(c.block(), attention_slots, ffn_slots).total();
}

}  // namespace shareformer::count
