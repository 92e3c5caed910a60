// SPDX-License-Identifier: MIT
// The library's own model files: one safetensors file, config and layer map in its metadata, each
// distinct tensor stored once.
#pragma once

#include <nlohmann/json.hpp>
#include <shareformer/core/encoder_config.hpp>
#include <shareformer/core/error.hpp>
#include <shareformer/core/types.hpp>
#include <shareformer/count/accounting.hpp>
#include <shareformer/io/huggingface.hpp>
#include <shareformer/io/safetensors.hpp>
#include <shareformer/models/encoder.hpp>
#include <shareformer/sharing/policies.hpp>
#include <string>
#include <utility>
#include <vector>

namespace shareformer::io {

/// The value of the "format" metadata entry of the library's model files.
inline constexpr const char* model_format = "shareformer";
/// The "version" metadata entry this library writes and reads.
inline constexpr int model_format_version = 1;

/// An EncoderConfig as a Hugging Face-style config object (model_type, hidden_size, hidden_act,
/// ...; every field written, ALBERT's groups included).
inline nlohmann::json config_to_json(const EncoderConfig& c) {
  nlohmann::json j;
  j["model_type"] = to_string(c.model_type);
  j["vocab_size"] = c.vocab_size;
  j["embedding_size"] = c.embedding_size;
  j["hidden_size"] = c.d_model;
  j["num_hidden_layers"] = c.n_layers;
  j["num_attention_heads"] = c.n_heads;
  j["intermediate_size"] = c.d_ff;
  j["hidden_act"] = hf_hidden_act(c.activation);
  j["max_position_embeddings"] = c.max_position_embeddings;
  j["type_vocab_size"] = c.type_vocab_size;
  j["layer_norm_eps"] = c.eps;
  j["num_hidden_groups"] = c.num_hidden_groups;
  j["inner_group_num"] = c.inner_group_num;
  return j;
}

namespace detail {

/// Calls fn(name, tensor) for every distinct tensor of `encoder` (a RowMatrix<T> in our (in, out)
/// layout or a RowVector<T>), in file order. E is Encoder<T> or const Encoder<T>.
template <typename E, typename Fn>
void visit_model_tensors(E& encoder, Fn&& fn) {
  const auto linear = [&](const std::string& base, auto& layer) {
    fn(base + ".weight", layer.weight());
    fn(base + ".bias", layer.bias());
  };
  const auto norm = [&](const std::string& base, auto& ln) {
    fn(base + ".gamma", ln.gamma());
    fn(base + ".beta", ln.beta());
  };
  fn(std::string("embeddings.word"), encoder.word_embeddings());
  fn(std::string("embeddings.position"), encoder.position_embeddings());
  fn(std::string("embeddings.token_type"), encoder.token_type_embeddings());
  norm("embeddings.norm", encoder.embedding_norm());
  if (encoder.has_embedding_projection())
    linear("embeddings.projection", encoder.embedding_projection());
  auto& stack = encoder.stack();
  for (std::size_t s = 0; s < stack.attention_slots().size(); ++s) {
    auto& a = stack.attention_slots()[s];
    const std::string base = "attention." + std::to_string(s);
    linear(base + ".qkv", a.attention().qkv());
    linear(base + ".out", a.attention().out());
    norm(base + ".norm", a.norm());
  }
  for (std::size_t s = 0; s < stack.ffn_slots().size(); ++s) {
    auto& f = stack.ffn_slots()[s];
    const std::string base = "ffn." + std::to_string(s);
    linear(base + ".in", f.ffn().in());
    linear(base + ".out", f.ffn().out());
    norm(base + ".norm", f.norm());
  }
  linear("pooler", encoder.pooler());
}

inline nlohmann::json layer_map_to_json(const LayerMap& map) {
  return {{"attention", map.attention()}, {"ffn", map.ffn()}};
}

/// Reads the JSON text of metadata entry `key`, or throws FormatError naming it.
inline nlohmann::json metadata_json(const SafetensorsFile& file, const std::string& key) {
  const auto& meta = file.metadata();
  const auto it = meta.find(key);
  if (it == meta.end())
    throw FormatError(file.name() + ": __metadata__ has no field '" + key + "'");
  try {
    return nlohmann::json::parse(it->second);
  } catch (const nlohmann::json::exception& e) {
    throw FormatError(file.name() + ": __metadata__ field '" + key +
                      "' is not valid JSON: " + e.what());
  }
}

/// The metadata string `key`, or throws FormatError naming it.
inline const std::string& metadata_string(const SafetensorsFile& file, const std::string& key) {
  const auto& meta = file.metadata();
  const auto it = meta.find(key);
  if (it == meta.end())
    throw FormatError(file.name() + ": __metadata__ has no field '" + key + "'");
  return it->second;
}

inline LayerMap layer_map_from_json(const nlohmann::json& j, const std::string& where) {
  if (!j.is_object()) throw FormatError(where + " is not a JSON object");
  std::vector<std::vector<Index>> tables;
  for (const char* kind : {"attention", "ffn"}) {
    const auto it = j.find(kind);
    if (it == j.end() || !it->is_array()) throw FormatError(where + " has no array '" + kind + "'");
    std::vector<Index> slots;
    for (const auto& v : *it) {
      if (!v.is_number_integer() || v.get<std::int64_t>() < 0 ||
          v.get<std::int64_t>() > std::numeric_limits<std::int32_t>::max())
        throw FormatError(where + " '" + kind + "' holds " + v.dump() +
                          ", expected slot numbers >= 0");
      slots.push_back(static_cast<Index>(v.get<std::int64_t>()));
    }
    tables.push_back(std::move(slots));
  }
  try {
    return LayerMap(tables[0], tables[1]);
  } catch (const ConfigError& e) {
    throw FormatError(where + ": " + e.what());
  }
}

}  // namespace detail

/// The model as a safetensors writer: tensors in our layout (Linear weights (in, out)) named
/// embeddings.{word,position,token_type}, embeddings.norm.{gamma,beta}, embeddings.projection.*
/// (ALBERT), attention.{slot}.{qkv,out}.{weight,bias}, attention.{slot}.norm.*,
/// ffn.{slot}.{in,out}.*, ffn.{slot}.norm.*, pooler.*; each distinct sub-layer once, stored as T
/// (F32 or F64). Metadata: "format" = "shareformer", "version", "config" (JSON, Hugging Face field
/// names), "layer_map" (JSON {"attention": [...], "ffn": [...]}) and "pooler" ("true" / "false").
template <typename T>
SafetensorsWriter model_writer(const Encoder<T>& encoder) {
  SafetensorsWriter writer;
  writer.set_metadata("format", model_format);
  writer.set_metadata("version", std::to_string(model_format_version));
  writer.set_metadata("config", config_to_json(encoder.config()).dump());
  writer.set_metadata("layer_map", detail::layer_map_to_json(encoder.layer_map()).dump());
  writer.set_metadata("pooler", encoder.has_pooler() ? "true" : "false");
  detail::visit_model_tensors(
      encoder, [&](const std::string& name, const auto& tensor) { writer.add(name, tensor); });
  return writer;
}

/// Saves `encoder` to `path` atomically (a temporary file renamed over it). Throws IoError.
template <typename T>
void save_model(const std::string& path, const Encoder<T>& encoder) {
  model_writer(encoder).write(path);
}

/// The model in an open file written by save_model, converted to T when stored otherwise.
/// Loading what was saved with the same T gives bit-identical weights and forwards.
/// Throws FormatError naming the file and the field for missing or corrupt metadata (format,
/// version, config, layer_map, pooler), a layer map that does not fit the config, a missing,
/// extra or non-floating tensor; ShapeError for a tensor of the wrong shape.
template <typename T = float>
Encoder<T> load_model(const SafetensorsFile& file) {
  const std::string& format = detail::metadata_string(file, "format");
  if (format != model_format)
    throw FormatError(file.name() + ": __metadata__ field 'format' is '" + format +
                      "', expected '" + model_format + "'");
  const std::string& version = detail::metadata_string(file, "version");
  if (version != std::to_string(model_format_version))
    throw FormatError(file.name() + ": __metadata__ field 'version' is '" + version +
                      "', this library reads version " + std::to_string(model_format_version));

  EncoderConfig config;
  try {
    config = detail::read_encoder_config(detail::metadata_json(file, "config"),
                                         file.name() + ": __metadata__ field 'config'", true);
  } catch (const ConfigError& e) {
    throw FormatError(e.what());
  }
  const std::string where = file.name() + ": __metadata__ field 'layer_map'";
  LayerMap map = detail::layer_map_from_json(detail::metadata_json(file, "layer_map"), where);
  if (map.n_layers() != config.stack_layers())
    throw FormatError(where + " has " + shareformer::detail::to_string(map.n_layers()) +
                      " layers, the config " +
                      shareformer::detail::to_string(config.stack_layers()));
  const std::string& pooler = detail::metadata_string(file, "pooler");
  if (pooler != "true" && pooler != "false")
    throw FormatError(file.name() + ": __metadata__ field 'pooler' is '" + pooler +
                      "', expected 'true' or 'false'");

  // The file must hold exactly the parameters the config and map imply; checked before allocating.
  const SlotPlan plan = map.plan(config.stack_layers());
  const Index expected = count::encoder_parameters(config, plan.attention_slots, plan.ffn_slots);
  std::int64_t held = 0;
  for (const auto& t : file.tensors()) {
    if (!is_floating(t.dtype))
      throw FormatError(file.name() + ": tensor '" + t.name + "' has dtype " + dtype_name(t.dtype) +
                        ", expected a floating-point dtype");
    held += t.numel();
  }
  if (held != expected)
    throw FormatError(file.name() + ": tensors hold " + std::to_string(held) +
                      " parameters, the config and layer map need " + std::to_string(expected));

  Encoder<T> encoder(config, std::move(map));
  std::size_t visited = 0;
  detail::visit_model_tensors(encoder, [&](const std::string& name, auto& tensor) {
    using Tensor = std::decay_t<decltype(tensor)>;
    if constexpr (static_cast<bool>(Tensor::IsVectorAtCompileTime))
      tensor = file.vector<T>(name, tensor.size());
    else
      tensor = file.matrix<T>(name, tensor.rows(), tensor.cols());
    ++visited;
  });
  if (visited != file.size())
    throw FormatError(file.name() + ": holds " + std::to_string(file.size()) +
                      " tensors, the model " + std::to_string(visited));
  encoder.set_has_pooler(pooler == "true");
  return encoder;
}

/// Opens and loads the model file at `path` (see the overload). Throws IoError as well.
template <typename T = float>
Encoder<T> load_model(const std::string& path) {
  return load_model<T>(SafetensorsFile::open(path));
}

}  // namespace shareformer::io
