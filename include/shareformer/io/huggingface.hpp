// SPDX-License-Identifier: MIT
// Hugging Face checkpoints: config.json -> EncoderConfig, and ALBERT / BERT safetensors -> Encoder.
#pragma once

#include <cstdint>
#include <filesystem>
#include <fstream>
#include <limits>
#include <nlohmann/json.hpp>
#include <optional>
#include <set>
#include <shareformer/core/config.hpp>
#include <shareformer/core/encoder_config.hpp>
#include <shareformer/core/error.hpp>
#include <shareformer/core/types.hpp>
#include <shareformer/io/safetensors.hpp>
#include <shareformer/models/encoder.hpp>
#include <sstream>
#include <string>
#include <utility>
#include <vector>

namespace shareformer::io {

/// The Activation that Hugging Face's `hidden_act` names: "gelu" and "gelu_python" (erf);
/// "gelu_new", "gelu_pytorch_tanh" and "gelu_fast" (the tanh approximation, written three ways);
/// "relu". Throws ConfigError "SOURCE: unsupported hidden_act 'NAME' ..." for any other name.
inline Activation parse_hidden_act(const std::string& name,
                                   const std::string& source = "config.json") {
  if (name == "gelu" || name == "gelu_python") return Activation::GeluErf;
  if (name == "gelu_new" || name == "gelu_pytorch_tanh" || name == "gelu_fast")
    return Activation::GeluTanh;
  if (name == "relu") return Activation::Relu;
  throw ConfigError(
      source + ": unsupported hidden_act '" + name +
      "' (supported: gelu, gelu_python, gelu_new, gelu_pytorch_tanh, gelu_fast, relu)");
}

/// The `hidden_act` name Hugging Face uses for `a` ("gelu", "gelu_new", "relu").
inline const char* hf_hidden_act(Activation a) {
  switch (a) {
    case Activation::GeluErf: return "gelu";
    case Activation::GeluTanh: return "gelu_new";
    case Activation::Relu: return "relu";
  }
  return "?";
}

namespace detail {

/// Typed access to the fields of a config object; every error names `source` and the field.
class ConfigFields {
 public:
  ConfigFields(const nlohmann::json& object, std::string source, bool required)
      : object_(object), source_(std::move(source)), required_(required) {}

  /// An integer field in [1, 2^31 - 1], or `fallback` when absent (and not required).
  Index dimension(const char* field, Index fallback) const {
    const nlohmann::json* v = find(field);
    if (v == nullptr) return fallback;
    if (!v->is_number_integer()) wrong_type(field, "an integer", *v);
    constexpr std::int64_t max = std::numeric_limits<std::int32_t>::max();
    const bool in_range = v->is_number_unsigned()
                              ? v->get<std::uint64_t>() >= 1 &&
                                    v->get<std::uint64_t>() <= static_cast<std::uint64_t>(max)
                              : v->get<std::int64_t>() >= 1 && v->get<std::int64_t>() <= max;
    if (!in_range)
      throw ConfigError(source_ + ": field '" + field + "' = " + v->dump() +
                        " is out of range (expected 1.." + std::to_string(max) + ")");
    return static_cast<Index>(v->get<std::int64_t>());
  }

  /// A positive finite number, or `fallback` when absent (and not required).
  double positive(const char* field, double fallback) const {
    const nlohmann::json* v = find(field);
    if (v == nullptr) return fallback;
    if (!v->is_number()) wrong_type(field, "a number", *v);
    const double x = v->get<double>();
    if (!(x > 0.0) || x > std::numeric_limits<double>::max())
      throw ConfigError(source_ + ": field '" + field + "' = " + v->dump() +
                        " is out of range (expected a positive number)");
    return x;
  }

  /// A string field, or `fallback` when absent (and not required).
  std::string string(const char* field, const std::string& fallback) const {
    const nlohmann::json* v = find(field);
    if (v == nullptr) return fallback;
    if (!v->is_string()) wrong_type(field, "a string", *v);
    return v->get<std::string>();
  }

  /// A boolean field, or `fallback` when absent.
  bool boolean(const char* field, bool fallback) const {
    const auto it = object_.find(field);
    if (it == object_.end()) return fallback;
    if (!it->is_boolean()) wrong_type(field, "true or false", *it);
    return it->get<bool>();
  }

  bool has(const char* field) const { return object_.contains(field); }
  const std::string& source() const { return source_; }

 private:
  const nlohmann::json* find(const char* field) const {
    const auto it = object_.find(field);
    if (it != object_.end()) return &*it;
    if (required_) throw ConfigError(source_ + ": missing field '" + field + "'");
    return nullptr;
  }

  [[noreturn]] void wrong_type(const char* field, const char* expected,
                               const nlohmann::json& v) const {
    throw ConfigError(source_ + ": field '" + field + "' must be " + expected + ", got " +
                      std::string(v.type_name()) + " " + v.dump());
  }

  const nlohmann::json& object_;
  std::string source_;
  bool required_;
};

/// Reads an EncoderConfig from a config object. `required` makes every field mandatory (the
/// library's own files); otherwise a missing field takes Hugging Face's default for the model type.
inline EncoderConfig read_encoder_config(const nlohmann::json& j, const std::string& source,
                                         bool required) {
  if (!j.is_object())
    throw ConfigError(source + ": expected a JSON object, got " + std::string(j.type_name()));
  const ConfigFields f(j, source, required);
  if (!f.has("model_type")) throw ConfigError(source + ": missing field 'model_type'");
  const std::string type = f.string("model_type", "");
  EncoderConfig c;
  if (type == "albert") {
    // AlbertConfig's defaults (the albert-xxlarge architecture).
    c.model_type = ModelType::Albert;
    c.vocab_size = f.dimension("vocab_size", 30000);
    c.embedding_size = f.dimension("embedding_size", 128);
    c.d_model = f.dimension("hidden_size", 4096);
    c.n_layers = f.dimension("num_hidden_layers", 12);
    c.num_hidden_groups = f.dimension("num_hidden_groups", 1);
    c.n_heads = f.dimension("num_attention_heads", 64);
    c.d_ff = f.dimension("intermediate_size", 16384);
    c.inner_group_num = f.dimension("inner_group_num", 1);
    c.activation = parse_hidden_act(f.string("hidden_act", "gelu_new"), source);
  } else if (type == "bert") {
    // BertConfig's defaults (bert-base-uncased); BERT has no embedding_size or groups.
    c.model_type = ModelType::Bert;
    c.vocab_size = f.dimension("vocab_size", 30522);
    c.d_model = f.dimension("hidden_size", 768);
    c.embedding_size = c.d_model;
    c.n_layers = f.dimension("num_hidden_layers", 12);
    c.n_heads = f.dimension("num_attention_heads", 12);
    c.d_ff = f.dimension("intermediate_size", 3072);
    c.num_hidden_groups = 1;
    c.inner_group_num = 1;
    c.activation = parse_hidden_act(f.string("hidden_act", "gelu"), source);
  } else {
    throw ConfigError(
        source + ": unknown model_type '" + type +
        "' (supported: albert, bert and BERT-architecture models that declare 'bert')");
  }
  c.max_position_embeddings = f.dimension("max_position_embeddings", 512);
  c.type_vocab_size = f.dimension("type_vocab_size", 2);
  c.eps = f.positive("layer_norm_eps", 1e-12);

  // Variants this library does not implement: refuse rather than compute something else.
  const std::string positions =
      ConfigFields(j, source, false).string("position_embedding_type", "absolute");
  if (positions != "absolute")
    throw ConfigError(source + ": position_embedding_type '" + positions +
                      "' is not supported (only 'absolute')");
  if (f.boolean("is_decoder", false) || f.boolean("add_cross_attention", false))
    throw ConfigError(
        source + ": decoder configurations (is_decoder / add_cross_attention) are not supported");
  c.validate(source);
  return c;
}

}  // namespace detail

/// Parses a Hugging Face config.json object. model_type "albert" or "bert" (BERT-architecture
/// checkpoints such as MiniLM declare "bert"); missing optional fields take AlbertConfig's /
/// BertConfig's defaults. `source` (the file) starts every message.
/// Throws ConfigError for an unknown model_type or hidden_act, a field of the wrong JSON type or
/// out of range, or an inconsistent config (e.g. hidden_size not divisible by num_attention_heads).
inline EncoderConfig parse_hf_config(const nlohmann::json& config,
                                     const std::string& source = "config.json") {
  return detail::read_encoder_config(config, source, false);
}

/// Reads and parses the config.json at `path` (or `path`/config.json for a directory).
/// Throws IoError when it cannot be read, FormatError when it is not JSON, ConfigError as
/// parse_hf_config.
inline EncoderConfig read_hf_config(const std::string& path) {
  namespace fs = std::filesystem;
  const std::string file =
      fs::is_directory(path) ? (fs::path(path) / "config.json").string() : path;
  std::ifstream in(file, std::ios::binary);
  if (!in) throw IoError(file + ": cannot open");
  std::ostringstream text;
  text << in.rdbuf();
  if (in.bad()) throw IoError(file + ": cannot read");
  nlohmann::json json;
  try {
    json = nlohmann::json::parse(text.str());
  } catch (const nlohmann::json::exception& e) {
    throw FormatError(file + ": not valid JSON: " + e.what());
  }
  return parse_hf_config(json, file);
}

/// Where a Hugging Face model directory keeps its files.
struct HfModelFiles {
  std::string config;   ///< DIR/config.json
  std::string weights;  ///< DIR/model.safetensors
};

/// The files of the model at `path`: a directory, or a config.json whose sibling is
/// model.safetensors. Throws IoError when a file is missing, saying what the directory holds
/// instead.
inline HfModelFiles hf_model_files(const std::string& path) {
  namespace fs = std::filesystem;
  std::error_code ec;
  const fs::path p(path);
  const bool directory = fs::is_directory(p, ec);
  if (!directory && !fs::is_regular_file(p, ec))
    throw IoError(path + ": no such file or directory");
  const fs::path dir = directory ? p : p.parent_path();
  HfModelFiles files{directory ? (dir / "config.json").string() : p.string(),
                     (dir / "model.safetensors").string()};
  if (!fs::is_regular_file(files.config, ec)) throw IoError(files.config + ": no such file");
  if (!fs::is_regular_file(files.weights, ec)) {
    std::string hint;
    if (fs::exists(dir / "model.safetensors.index.json", ec))
      hint = " (sharded checkpoints are not supported)";
    else if (fs::exists(dir / "pytorch_model.bin", ec))
      hint = " (only safetensors is read: convert pytorch_model.bin to model.safetensors)";
    throw IoError(files.weights + ": no such file" + hint);
  }
  return files;
}

namespace detail {

/// One Hugging Face tensor the encoder reads and where it goes. A Linear weight arrives [out, in]
/// and is written transposed into columns [offset, offset + out) of an (in, *) matrix; embeddings
/// arrive in our layout; vectors fill [offset, offset + n).
template <typename T>
struct HfTensor {
  std::string name;
  std::vector<Index> shape;
  RowMatrix<T>* matrix = nullptr;
  RowVector<T>* vector = nullptr;
  Index offset = 0;
  bool transpose = false;
};

/// Every tensor of an ALBERT / BERT encoder, by Hugging Face name without prefix. With a null
/// `encoder` the destinations are null (a list of names and shapes).
template <typename T>
std::vector<HfTensor<T>> hf_tensors(const EncoderConfig& c, Encoder<T>* encoder, bool pooler) {
  const Index e = c.embedding_size, h = c.d_model, f = c.d_ff;
  std::vector<HfTensor<T>> out;
  const auto matrix = [&](std::string name, Index rows, Index cols, RowMatrix<T>* m) {
    out.push_back({std::move(name), {rows, cols}, m, nullptr, 0, false});
  };
  const auto vector = [&](std::string name, Index n, RowVector<T>* v, Index offset = 0) {
    out.push_back({std::move(name), {n}, nullptr, v, offset, false});
  };
  // Linear(in -> out) as weight [out, in] + bias [out], landing at column `offset` of `layer`.
  const auto linear = [&](const std::string& base, Index in, Index out_features, Linear<T>* layer,
                          Index offset = 0) {
    out.push_back({base + ".weight",
                   {out_features, in},
                   layer ? &layer->weight() : nullptr,
                   nullptr,
                   offset,
                   true});
    vector(base + ".bias", out_features, layer ? &layer->bias() : nullptr, offset);
  };
  const auto norm = [&](const std::string& base, Index n, LayerNorm<T>* ln) {
    vector(base + ".weight", n, ln ? &ln->gamma() : nullptr);
    vector(base + ".bias", n, ln ? &ln->beta() : nullptr);
  };
  Encoder<T>* m = encoder;
  matrix("embeddings.word_embeddings.weight", c.vocab_size, e, m ? &m->word_embeddings() : nullptr);
  matrix("embeddings.position_embeddings.weight", c.max_position_embeddings, e,
         m ? &m->position_embeddings() : nullptr);
  matrix("embeddings.token_type_embeddings.weight", c.type_vocab_size, e,
         m ? &m->token_type_embeddings() : nullptr);
  norm("embeddings.LayerNorm", e, m ? &m->embedding_norm() : nullptr);
  const bool albert = c.model_type == ModelType::Albert;
  if (albert)
    linear("encoder.embedding_hidden_mapping_in", e, h, m ? &m->embedding_projection() : nullptr);

  // HF layer (ALBERT: group g, inner layer k) is attention slot and FFN slot `slot` of the stack.
  const Index slots = albert ? c.num_hidden_groups * c.inner_group_num : c.n_layers;
  for (Index slot = 0; slot < slots; ++slot) {
    AttentionSublayer<T>* a =
        m ? &m->stack().attention_slots().at(static_cast<std::size_t>(slot)) : nullptr;
    FfnSublayer<T>* ff = m ? &m->stack().ffn_slots().at(static_cast<std::size_t>(slot)) : nullptr;
    Linear<T>* qkv = a ? &a->attention().qkv() : nullptr;
    if (albert) {
      const std::string base = "encoder.albert_layer_groups." +
                               shareformer::detail::to_string(slot / c.inner_group_num) +
                               ".albert_layers." +
                               shareformer::detail::to_string(slot % c.inner_group_num) + ".";
      linear(base + "attention.query", h, h, qkv, 0);
      linear(base + "attention.key", h, h, qkv, h);
      linear(base + "attention.value", h, h, qkv, 2 * h);
      linear(base + "attention.dense", h, h, a ? &a->attention().out() : nullptr);
      norm(base + "attention.LayerNorm", h, a ? &a->norm() : nullptr);
      linear(base + "ffn", h, f, ff ? &ff->ffn().in() : nullptr);
      linear(base + "ffn_output", f, h, ff ? &ff->ffn().out() : nullptr);
      norm(base + "full_layer_layer_norm", h, ff ? &ff->norm() : nullptr);
    } else {
      const std::string base = "encoder.layer." + shareformer::detail::to_string(slot) + ".";
      linear(base + "attention.self.query", h, h, qkv, 0);
      linear(base + "attention.self.key", h, h, qkv, h);
      linear(base + "attention.self.value", h, h, qkv, 2 * h);
      linear(base + "attention.output.dense", h, h, a ? &a->attention().out() : nullptr);
      norm(base + "attention.output.LayerNorm", h, a ? &a->norm() : nullptr);
      linear(base + "intermediate.dense", h, f, ff ? &ff->ffn().in() : nullptr);
      linear(base + "output.dense", f, h, ff ? &ff->ffn().out() : nullptr);
      norm(base + "output.LayerNorm", h, ff ? &ff->norm() : nullptr);
    }
  }
  if (pooler) linear(albert ? "pooler" : "pooler.dense", h, h, m ? &m->pooler() : nullptr);
  return out;
}

/// Whether an unused tensor is one a Hugging Face checkpoint may carry beside the encoder: a task
/// head (predictions.*, cls.*, sop_classifier.*, classifier.*, qa_outputs.*, ...) or a buffer
/// (*.position_ids, embeddings.token_type_ids). Anything else under embeddings.* / encoder.* means
/// config.json describes another model than the weights.
inline bool hf_ignorable(const std::string& name, const std::string& prefix) {
  const auto ends_with = [&](const char* suffix) {
    const std::string s(suffix);
    return name.size() >= s.size() && name.compare(name.size() - s.size(), s.size(), s) == 0;
  };
  if (ends_with("position_ids") || ends_with("embeddings.token_type_ids")) return true;
  if (name.compare(0, prefix.size(), prefix) != 0) return true;  // outside the encoder: a head
  const std::string rest = name.substr(prefix.size());
  return rest.rfind("embeddings.", 0) != 0 && rest.rfind("encoder.", 0) != 0 &&
         rest.rfind("pooler.", 0) != 0;
}

}  // namespace detail

/// The encoder in an open Hugging Face safetensors checkpoint, for `config` (usually read from its
/// config.json). Tensor names may carry the "albert." or "bert." prefix of the *ForMaskedLM /
/// *ForPreTraining checkpoints or none; heads and buffers are ignored. F16 / BF16 weights are
/// converted to T. Without pooler weights the model's has_pooler() is false and its pooler zero.
/// Every tensor is checked before anything is allocated. Throws FormatError
/// "FILE: no tensor 'NAME'" for a missing tensor, a non-floating dtype or an encoder tensor the
/// config does not account for (e.g. more layers than num_hidden_layers), ShapeError "FILE: tensor
/// 'NAME' has shape [a, b], expected [c, d]", ConfigError for an invalid config.
template <typename T = float>
Encoder<T> load_hf_weights(const EncoderConfig& config, const SafetensorsFile& file) {
  config.validate();
  // The prefix is the one under which the word embeddings are found.
  std::string prefix;
  bool found = false;
  for (const char* candidate : {"", "albert.", "bert."}) {
    if (file.contains(std::string(candidate) + "embeddings.word_embeddings.weight")) {
      prefix = candidate;
      found = true;
      break;
    }
  }
  if (!found)
    throw FormatError(
        file.name() +
        ": no tensor 'embeddings.word_embeddings.weight' (nor with prefix 'albert.' or "
        "'bert.'): not an ALBERT / BERT checkpoint");
  const std::string pooler_weight =
      prefix + (config.model_type == ModelType::Albert ? "pooler.weight" : "pooler.dense.weight");
  const bool pooler = file.contains(pooler_weight);

  // Check names, dtypes and shapes first, so a mismatched file allocates nothing.
  std::set<std::string> used;
  for (const auto& t : detail::hf_tensors<T>(config, nullptr, pooler)) {
    const std::string name = prefix + t.name;
    if (!file.contains(name))
      throw FormatError(file.name() + ": no tensor '" + name + "' (the " +
                        to_string(config.model_type) + " model in config.json needs it)");
    const TensorInfo& info = file.info(name);
    if (!is_floating(info.dtype))
      throw FormatError(file.name() + ": tensor '" + name + "' has dtype " +
                        dtype_name(info.dtype) + ", expected a floating-point dtype");
    const bool same =
        info.shape.size() == t.shape.size() &&
        std::equal(t.shape.begin(), t.shape.end(), info.shape.begin(),
                   [](Index a, std::int64_t b) { return a == static_cast<Index>(b); });
    if (!same)
      throw ShapeError(file.name() + ": tensor '" + name + "' has shape " +
                       detail::format_shape(info.shape) + ", expected " +
                       detail::format_shape(t.shape));
    used.insert(name);
  }
  for (const auto& info : file.tensors())
    if (used.count(info.name) == 0 && !detail::hf_ignorable(info.name, prefix))
      throw FormatError(
          file.name() + ": tensor '" + info.name +
          "' is not part of the model config.json describes (num_hidden_layers = " +
          shareformer::detail::to_string(config.n_layers) +
          (config.model_type == ModelType::Albert
               ? ", num_hidden_groups = " +
                     shareformer::detail::to_string(config.num_hidden_groups) +
                     ", inner_group_num = " + shareformer::detail::to_string(config.inner_group_num)
               : std::string()) +
          ")");

  Encoder<T> encoder(config);
  for (const auto& t : detail::hf_tensors<T>(config, &encoder, pooler)) {
    const std::string name = prefix + t.name;
    if (t.vector != nullptr) {
      t.vector->segment(t.offset, t.shape[0]) = file.vector<T>(name, t.shape[0]);
    } else if (t.transpose) {
      // [out, in] -> columns [offset, offset + out) of the (in, *) weight
      t.matrix->middleCols(t.offset, t.shape[0]) =
          file.matrix<T>(name, t.shape[0], t.shape[1]).transpose();
    } else {
      *t.matrix = file.matrix<T>(name, t.shape[0], t.shape[1]);
    }
  }
  encoder.set_has_pooler(pooler);
  return encoder;
}

/// Loads a Hugging Face model: `path` is a directory holding config.json and model.safetensors, or
/// a config.json whose sibling is model.safetensors. Throws as hf_model_files, read_hf_config and
/// load_hf_weights; every message names the file.
template <typename T = float>
Encoder<T> load_hf_model(const std::string& path) {
  const HfModelFiles files = hf_model_files(path);
  const EncoderConfig config = read_hf_config(files.config);
  const SafetensorsFile weights = SafetensorsFile::open(files.weights);
  return load_hf_weights<T>(config, weights);
}

}  // namespace shareformer::io
