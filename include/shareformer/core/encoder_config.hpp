// SPDX-License-Identifier: MIT
// EncoderConfig: a whole BERT-family encoder (embeddings, layer stack, pooler), ALBERT included.
#pragma once

#include <shareformer/core/config.hpp>
#include <shareformer/core/error.hpp>
#include <shareformer/core/types.hpp>

#include <string>

namespace shareformer {

/// The architecture families the encoders cover.
enum class ModelType {
  Albert,  ///< factorised embeddings (size E) projected to d_model, grouped shared layers
  Bert,    ///< embeddings of size d_model, one distinct block per layer (BERT, MiniLM, ...)
};

inline const char* to_string(ModelType t) { return t == ModelType::Albert ? "albert" : "bert"; }

/// Hyper-parameters of an encoder, named like ours; comments give Hugging Face's config.json names.
struct EncoderConfig {
  ModelType model_type = ModelType::Bert;
  Index vocab_size = 30522;                     ///< vocab_size
  Index embedding_size = 768;                   ///< embedding_size (ALBERT's E; BERT: = d_model)
  Index d_model = 768;                          ///< hidden_size
  Index n_layers = 12;                          ///< num_hidden_layers
  Index n_heads = 12;                           ///< num_attention_heads
  Index d_ff = 3072;                            ///< intermediate_size
  Activation activation = Activation::GeluErf;  ///< hidden_act
  Index max_position_embeddings = 512;          ///< max_position_embeddings
  Index type_vocab_size = 2;                    ///< type_vocab_size
  double eps = 1e-12;                           ///< layer_norm_eps
  Index num_hidden_groups = 1;                  ///< ALBERT only
  Index inner_group_num = 1;                    ///< ALBERT only

  /// The configuration of each transformer block (post-LN).
  BlockConfig block() const {
    BlockConfig c;
    c.d_model = d_model;
    c.n_heads = n_heads;
    c.d_ff = d_ff;
    c.activation = activation;
    c.norm = NormPlacement::Post;
    c.eps = eps;
    return c;
  }

  /// Block applications in the stack: ALBERT runs inner_group_num blocks per hidden layer.
  Index stack_layers() const {
    return model_type == ModelType::Albert ? n_layers * inner_group_num : n_layers;
  }

  /// Throws ConfigError naming the first field out of range (`source` prefixes the message).
  void validate(const std::string& source = "EncoderConfig") const {
    auto positive = [&](const char* field, Index v) {
      if (v < 1)
        throw ConfigError(source + ": " + field + " must be at least 1, got " +
                          detail::to_string(v));
    };
    positive("vocab_size", vocab_size);
    positive("embedding_size", embedding_size);
    positive("hidden_size", d_model);
    positive("num_hidden_layers", n_layers);
    positive("num_attention_heads", n_heads);
    positive("intermediate_size", d_ff);
    positive("max_position_embeddings", max_position_embeddings);
    positive("type_vocab_size", type_vocab_size);
    positive("num_hidden_groups", num_hidden_groups);
    positive("inner_group_num", inner_group_num);
    if (!(eps > 0.0))
      throw ConfigError(source + ": layer_norm_eps must be positive, got " + std::to_string(eps));
    if (d_model % n_heads != 0)
      throw ConfigError(source + ": hidden_size (" + detail::to_string(d_model) +
                        ") is not divisible by num_attention_heads (" + detail::to_string(n_heads) +
                        ")");
    if (model_type == ModelType::Bert && embedding_size != d_model)
      throw ConfigError(source + ": a BERT model needs embedding_size == hidden_size, got " +
                        detail::to_string(embedding_size) + " and " + detail::to_string(d_model));
    if (model_type == ModelType::Albert && n_layers % num_hidden_groups != 0)
      throw ConfigError(source + ": num_hidden_layers (" + detail::to_string(n_layers) +
                        ") is not divisible by num_hidden_groups (" +
                        detail::to_string(num_hidden_groups) + ")");
  }
};

}  // namespace shareformer
