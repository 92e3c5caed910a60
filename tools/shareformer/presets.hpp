// SPDX-License-Identifier: MIT
// Built-in model configurations, so that info and bench need no download.
#pragma once

#include <optional>
#include <shareformer/core/encoder_config.hpp>
#include <string>
#include <vector>

namespace shareformer::cli {

/// A named configuration and where its numbers come from.
struct Preset {
  std::string name;
  std::string source;
  EncoderConfig config;
};

namespace detail {

inline EncoderConfig albert(Index d_model, Index n_heads, Index d_ff, Index n_layers) {
  EncoderConfig c;
  c.model_type = ModelType::Albert;
  c.vocab_size = 30000;
  c.embedding_size = 128;
  c.d_model = d_model;
  c.n_layers = n_layers;
  c.n_heads = n_heads;
  c.d_ff = d_ff;
  c.activation = Activation::GeluTanh;  // "gelu_new"
  c.max_position_embeddings = 512;
  c.type_vocab_size = 2;
  c.eps = 1e-12;
  return c;
}

inline EncoderConfig bert(Index d_model, Index n_heads, Index d_ff, Index n_layers, double eps) {
  EncoderConfig c;
  c.model_type = ModelType::Bert;
  c.vocab_size = 30522;
  c.embedding_size = d_model;
  c.d_model = d_model;
  c.n_layers = n_layers;
  c.n_heads = n_heads;
  c.d_ff = d_ff;
  c.activation = Activation::GeluErf;  // "gelu"
  c.max_position_embeddings = 512;
  c.type_vocab_size = 2;
  c.eps = eps;
  return c;
}

}  // namespace detail

/// Every preset, in the order --help lists them. The numbers are those of the Hugging Face Hub's
/// config.json files (copies in tests/data/hf_configs/); `seed` is the seed document's block
/// (d_model 512, 8 heads, d_ff 2048, 12 layers, nn.LayerNorm's eps) in a BERT-like encoder.
inline const std::vector<Preset>& presets() {
  static const std::vector<Preset> all = {
      {"seed", "the seed document's block in a BERT-like encoder",
       detail::bert(512, 8, 2048, 12, 1e-5)},
      {"bert-base", "bert-base-uncased", detail::bert(768, 12, 3072, 12, 1e-12)},
      {"albert-base", "albert-base-v2", detail::albert(768, 12, 3072, 12)},
      {"albert-large", "albert-large-v2", detail::albert(1024, 16, 4096, 24)},
      {"albert-xlarge", "albert-xlarge-v2", detail::albert(2048, 16, 8192, 24)},
      {"albert-xxlarge", "albert-xxlarge-v2", detail::albert(4096, 64, 16384, 12)},
      {"minilm-l6", "sentence-transformers/all-MiniLM-L6-v2",
       detail::bert(384, 12, 1536, 6, 1e-12)},
  };
  return all;
}

/// The preset called `name`, or nullopt.
inline std::optional<Preset> find_preset(const std::string& name) {
  for (const Preset& p : presets())
    if (p.name == name) return p;
  return std::nullopt;
}

/// "seed, bert-base, ..." for help texts and error messages.
inline std::string preset_names() {
  std::string names;
  for (const Preset& p : presets()) names += (names.empty() ? "" : ", ") + p.name;
  return names;
}

}  // namespace shareformer::cli
