// SPDX-License-Identifier: MIT
// Resolution of --model arguments: presets, Hugging Face configs and directories, model files.
#include "model_source.hpp"

#include <filesystem>
#include <shareformer/core/error.hpp>
#include <shareformer/io/huggingface.hpp>
#include <shareformer/io/model_io.hpp>

#include "policy_names.hpp"
#include "presets.hpp"

namespace shareformer::cli {

namespace fs = std::filesystem;

const char* to_string(SourceKind kind) {
  switch (kind) {
    case SourceKind::Preset: return "preset";
    case SourceKind::ConfigJson: return "config.json";
    case SourceKind::HfDirectory: return "huggingface";
    case SourceKind::ModelFile: return "shareformer";
  }
  return "?";
}

nlohmann::ordered_json config_json(const EncoderConfig& c) {
  return {
      {"model_type", to_string(c.model_type)},
      {"vocab_size", c.vocab_size},
      {"embedding_size", c.embedding_size},
      {"d_model", c.d_model},
      {"n_layers", c.n_layers},
      {"n_heads", c.n_heads},
      {"d_head", c.d_model / c.n_heads},
      {"d_ff", c.d_ff},
      {"activation", to_string(c.activation)},
      {"max_position_embeddings", c.max_position_embeddings},
      {"type_vocab_size", c.type_vocab_size},
      {"layer_norm_eps", c.eps},
      {"num_hidden_groups", c.num_hidden_groups},
      {"inner_group_num", c.inner_group_num},
      {"stack_layers", c.stack_layers()},
  };
}

namespace {

// Fills the slots and the sharing name from a layer map: one of the four named policies when the
// map is theirs, ALBERT's "grouped:GxK" when it is the config's own grouping, else "map".
void set_sharing(ModelSource& source, const LayerMap& map) {
  const SlotPlan plan = map.plan(map.n_layers());
  source.attention_slots = plan.attention_slots;
  source.ffn_slots = plan.ffn_slots;
  const auto same = [&](const SlotPlan& other) {
    return other.attention == plan.attention && other.ffn == plan.ffn;
  };
  for (const char* name : kPolicyNames)
    if (same(policy_plan(name, map.n_layers()))) return void(source.sharing = name);
  const EncoderConfig& c = source.config;
  if (c.model_type == ModelType::Albert && same(default_layer_map(c).plan(map.n_layers())))
    return void(source.sharing = "grouped:" + shareformer::detail::to_string(c.num_hidden_groups) +
                                 "x" + shareformer::detail::to_string(c.inner_group_num));
  source.sharing = "map";
}

}  // namespace

ModelSource resolve_model(const std::string& spec) {
  ModelSource source;
  source.spec = spec;
  source.name = spec;
  std::error_code ec;
  const fs::file_status status = fs::status(spec, ec);
  if (fs::is_directory(status)) {
    source.kind = SourceKind::HfDirectory;
    source.config = io::read_hf_config(spec);
    const fs::path weights = fs::path(spec) / "model.safetensors";
    if (fs::is_regular_file(weights, ec)) source.weights = weights.string();
  } else if (fs::is_regular_file(status) && fs::path(spec).extension() == ".json") {
    source.kind = SourceKind::ConfigJson;
    source.config = io::read_hf_config(spec);
  } else if (fs::is_regular_file(status)) {
    const Encoder<float> model = io::load_model<float>(spec);
    source.kind = SourceKind::ModelFile;
    source.config = model.config();
    source.weights = spec;
    set_sharing(source, model.layer_map());
    return source;
  } else if (const auto preset = find_preset(spec)) {
    source.kind = SourceKind::Preset;
    source.config = preset->config;
  } else if (fs::exists(status)) {
    throw IoError(spec + ": not a regular file or directory");
  } else {
    throw IoError(spec + ": no such file, directory or preset (presets: " + preset_names() + ")");
  }
  set_sharing(source, default_layer_map(source.config));
  return source;
}

Encoder<float> load_encoder(const std::string& path) {
  std::error_code ec;
  const fs::file_status status = fs::status(path, ec);
  if (fs::is_directory(status) ||
      (fs::is_regular_file(status) && fs::path(path).extension() == ".json"))
    return io::load_hf_model<float>(path);
  if (fs::is_regular_file(status)) return io::load_model<float>(path);
  if (find_preset(path))
    throw IoError(path + ": is a preset, which has no weights (give a model directory or file)");
  throw IoError(path + ": no such file or directory");
}

}  // namespace shareformer::cli
