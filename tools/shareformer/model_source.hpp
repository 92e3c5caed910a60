// SPDX-License-Identifier: MIT
// Resolves the --model argument (preset name, config.json, model directory or model file) to a
// configuration, without loading weights.
#pragma once

#include <nlohmann/json.hpp>
#include <shareformer/core/encoder_config.hpp>
#include <shareformer/models/encoder.hpp>
#include <string>

namespace shareformer::cli {

/// What a --model argument names.
enum class SourceKind {
  Preset,       ///< a built-in configuration
  ConfigJson,   ///< a Hugging Face config.json alone
  HfDirectory,  ///< a directory holding config.json (and model.safetensors when it has weights)
  ModelFile,    ///< a model file in shareformer's own format
};

const char* to_string(SourceKind kind);

/// A resolved --model argument: the configuration and the model's own sharing.
struct ModelSource {
  std::string spec;  ///< the argument as given
  std::string name;  ///< preset name or path
  SourceKind kind = SourceKind::Preset;
  EncoderConfig config;
  Index attention_slots = 0;  ///< distinct attention sub-layers of the model itself
  Index ffn_slots = 0;        ///< distinct FFN sub-layers of the model itself
  std::string sharing;        ///< the model's own sharing, in words ("all", "none", "grouped:2x1")
  std::string weights;        ///< the weights file, empty when there is none
};

/// Resolves `spec` without reading weights (but a model file is read whole: its sharing lives with
/// its weights). An existing directory or file wins over a preset of the same name; a file is a
/// config.json when its name ends in .json, else a model file of the library's own format.
/// Throws IoError for a path that names nothing, FormatError / ConfigError for a bad config.
ModelSource resolve_model(const std::string& spec);

/// Loads the model at `path` with its weights: a Hugging Face directory (config.json +
/// model.safetensors), a config.json beside its model.safetensors, or a model file of the
/// library's own format. Presets have no weights: IoError. Throws as the loaders do.
Encoder<float> load_encoder(const std::string& path);

/// The configuration as JSON, in the library's vocabulary (d_model, n_heads, d_head, d_ff, ...).
nlohmann::ordered_json config_json(const EncoderConfig& c);

}  // namespace shareformer::cli
