// SPDX-License-Identifier: MIT
// The library's own model files: round trips, shared tensors stored once, corrupt metadata.
#include <gtest/gtest.h>
#include <unistd.h>

#include <cstring>
#include <filesystem>
#include <shareformer/shareformer.hpp>
#include <string>

#include "support/reference.hpp"
#include "support/scratch.hpp"

namespace sf = shareformer;
namespace io = shareformer::io;
namespace fs = std::filesystem;
using sf::IdMatrix;
using sf::Index;
using sf::RowMatrix;

namespace {

using shareformer::testing::expect_error;
using shareformer::testing::TempDir;

sf::EncoderConfig config(sf::ModelType type, Index n_layers = 6) {
  sf::EncoderConfig c;
  c.model_type = type;
  c.vocab_size = 40;
  c.embedding_size = type == sf::ModelType::Albert ? 8 : 24;
  c.d_model = 24;
  c.n_heads = 3;  // d_head 8
  c.d_ff = 48;
  c.n_layers = n_layers;
  c.max_position_embeddings = 12;
  c.type_vocab_size = 2;
  c.eps = 1e-7;  // not the default: must survive the round trip exactly
  c.activation = sf::Activation::GeluTanh;
  return c;
}

struct Inputs {
  IdMatrix ids{2, 5}, types{2, 5}, mask{2, 5};
  Inputs() {
    ids << 3, 9, 39, 0, 1, 8, 8, 2, 17, 5;
    types << 0, 0, 1, 1, 1, 0, 1, 0, 1, 0;
    mask << 1, 1, 1, 1, 1, 1, 1, 1, 0, 0;
  }
};

/// Whether every tensor of the two encoders is bitwise equal.
template <typename T>
void expect_same_weights(const sf::Encoder<T>& a, const sf::Encoder<T>& b) {
  std::vector<std::string> names_a, names_b;
  std::vector<RowMatrix<T>> values_a, values_b;
  const auto collect = [](const sf::Encoder<T>& e, std::vector<std::string>& names,
                          std::vector<RowMatrix<T>>& values) {
    io::detail::visit_model_tensors(e, [&](const std::string& name, const auto& t) {
      names.push_back(name);
      values.emplace_back(t);
    });
  };
  collect(a, names_a, values_a);
  collect(b, names_b, values_b);
  ASSERT_EQ(names_a, names_b);
  for (std::size_t i = 0; i < values_a.size(); ++i) {
    ASSERT_EQ(values_a[i].rows(), values_b[i].rows()) << names_a[i];
    ASSERT_EQ(values_a[i].cols(), values_b[i].cols()) << names_a[i];
    EXPECT_EQ(0,
              std::memcmp(values_a[i].data(), values_b[i].data(), sizeof(T) * values_a[i].size()))
        << names_a[i];
  }
}

template <typename T>
void round_trip(const sf::Encoder<T>& model, const std::string& path) {
  io::save_model(path, model);
  const auto loaded = io::load_model<T>(path);
  EXPECT_EQ(loaded.config().model_type, model.config().model_type);
  EXPECT_EQ(loaded.config().eps, model.config().eps);
  EXPECT_EQ(loaded.config().activation, model.config().activation);
  EXPECT_EQ(loaded.layer_map().attention(), model.layer_map().attention());
  EXPECT_EQ(loaded.layer_map().ffn(), model.layer_map().ffn());
  EXPECT_EQ(loaded.has_pooler(), model.has_pooler());
  EXPECT_EQ(loaded.parameter_count(), model.parameter_count());
  expect_same_weights(model, loaded);
  const Inputs in;
  const auto a = model.forward(in.ids, in.types, in.mask, 1);
  const auto b = loaded.forward(in.ids, in.types, in.mask, 1);
  EXPECT_TRUE(a.last_hidden_state == b.last_hidden_state);
  EXPECT_TRUE(a.pooler_output == b.pooler_output);
}

/// Bytes of the stack's tensors (attention.* and ffn.*) and how many there are.
std::pair<std::uint64_t, std::size_t> stack_bytes(const io::SafetensorsFile& file) {
  std::uint64_t bytes = 0;
  std::size_t count = 0;
  for (const auto& t : file.tensors())
    if (t.name.rfind("attention.", 0) == 0 || t.name.rfind("ffn.", 0) == 0) {
      bytes += t.byte_size();
      ++count;
    }
  return {bytes, count};
}

}  // namespace

TEST(ModelIo, RoundTripIsBitIdenticalForEveryPolicy) {
  TempDir dir;
  const std::vector<std::pair<const char*, sf::LayerMap>> maps = {
      {"none", sf::LayerMap::from_plan(sf::Unshared::plan(6))},
      {"all", sf::LayerMap::from_plan(sf::SharedAll::plan(6))},
      {"cycle_rev", sf::LayerMap::from_plan(sf::CycleRev<3>::plan(6))},
      {"split", sf::LayerMap({0, 1, 2, 0, 1, 2}, {0, 0, 1, 1, 2, 2})}};
  for (const auto type : {sf::ModelType::Albert, sf::ModelType::Bert})
    for (const auto& [name, map] : maps) {
      SCOPED_TRACE(std::string(to_string(type)) + " " + name);
      sf::Encoder<float> model(config(type), map);
      model.randomize(11, 0.2, 0.1, 0.1);
      round_trip(model, dir / (std::string(name) + ".safetensors"));
      sf::Encoder<double> model64(config(type), map);
      model64.randomize(12, 0.2, 0.1, 0.1);
      round_trip(model64, dir / (std::string(name) + "64.safetensors"));
    }
}

TEST(ModelIo, RoundTripOfHuggingFaceModels) {
  TempDir dir;
  for (const char* name : {"albert_groups", "bert_pretraining"}) {
    SCOPED_TRACE(name);
    const auto model =
        io::load_hf_model<float>(std::string(SHAREFORMER_GOLDEN_DIR) + "/hf/" + name);
    round_trip(model, dir / (std::string(name) + ".safetensors"));
    // ALBERT's groups keep their tables: 4 distinct blocks for 8 applications.
    const auto file = io::SafetensorsFile::open(dir / (std::string(name) + ".safetensors"));
    EXPECT_EQ(stack_bytes(file).second, 12 * model.stack().attention_slots().size());
  }
}

TEST(ModelIo, WithoutPoolerFlagSurvives) {
  TempDir dir;
  sf::Encoder<float> model(config(sf::ModelType::Bert));
  model.randomize(3, 0.2, 0.1, 0.1);
  model.set_has_pooler(false);
  round_trip(model, dir / "m.safetensors");
}

TEST(ModelIo, SharedTensorsAreStoredOnce) {
  TempDir dir;
  auto c = config(sf::ModelType::Bert, 12);
  c.vocab_size = 8;  // small embeddings, so the blocks dominate the file
  c.max_position_embeddings = 8;
  sf::Encoder<float> unshared(c, sf::LayerMap::from_plan(sf::Unshared::plan(12)));
  sf::Encoder<float> shared(c, sf::LayerMap::from_plan(sf::SharedAll::plan(12)));
  io::save_model(dir / "none.safetensors", unshared);
  io::save_model(dir / "all.safetensors", shared);
  const auto none_file = io::SafetensorsFile::open(dir / "none.safetensors");
  const auto all_file = io::SafetensorsFile::open(dir / "all.safetensors");
  const auto [none_bytes, none_count] = stack_bytes(none_file);
  const auto [all_bytes, all_count] = stack_bytes(all_file);
  // One block: 6 attention tensors (qkv, out, norm; weight and bias each) + 6 FFN tensors.
  EXPECT_EQ(all_count, 12u);
  EXPECT_EQ(none_count, 12u * 12u);
  EXPECT_EQ(none_bytes, 12 * all_bytes);
  const auto block_params = sf::count::block(c.block()).total();
  EXPECT_EQ(all_bytes, static_cast<std::uint64_t>(block_params) * sizeof(float));
  const double ratio = static_cast<double>(fs::file_size(dir / "all.safetensors")) /
                       static_cast<double>(fs::file_size(dir / "none.safetensors"));
  EXPECT_GT(ratio, 1.0 / 12);
  EXPECT_LT(ratio, 1.0 / 12 + 0.03);  // the rest: embeddings, pooler, header
}

TEST(ModelIo, SaveReplacesAtomically) {
  TempDir dir;
  sf::Encoder<float> model(config(sf::ModelType::Albert));
  model.randomize(5, 0.2, 0.1, 0.1);
  io::save_model(dir / "m.safetensors", model);
  model.randomize(6, 0.2, 0.1, 0.1);
  io::save_model(dir / "m.safetensors", model);
  expect_same_weights(model, io::load_model<float>(dir / "m.safetensors"));
  expect_error<sf::IoError>([&] { io::save_model(dir / "missing/m.safetensors", model); },
                            "missing/m.safetensors");
  std::size_t files = 0;
  for (const auto& entry : fs::directory_iterator(dir / "")) files += entry.is_regular_file();
  EXPECT_EQ(files, 1u);  // no temporary left behind
}

// ---------------------------------------------------------------------------------------------
// Corrupt or mismatched files

class ModelIoErrors : public ::testing::Test {
 protected:
  ModelIoErrors() { model.randomize(9, 0.2, 0.1, 0.1); }
  /// Loads the model's file after `edit` changed its writer.
  template <typename Edit>
  void load_edited(Edit&& edit) {
    io::SafetensorsWriter writer = io::model_writer(model);
    edit(writer);
    io::load_model<float>(io::SafetensorsFile::from_bytes(writer.to_bytes(), "m.safetensors"));
  }
  void load_with(const std::string& key, const std::string& value) {
    load_edited([&](io::SafetensorsWriter& w) { w.set_metadata(key, value); });
  }
  static std::string config_with(const sf::EncoderConfig& c, const char* field,
                                 const nlohmann::json& value) {
    nlohmann::json j = io::config_to_json(c);
    if (value.is_null())
      j.erase(field);
    else
      j[field] = value;
    return j.dump();
  }

  sf::Encoder<float> model{config(sf::ModelType::Albert),
                           sf::LayerMap::from_plan(sf::CycleRev<3>::plan(6))};
};

TEST_F(ModelIoErrors, UnmodifiedLoads) {
  EXPECT_NO_THROW(load_edited([](io::SafetensorsWriter&) {}));
}

TEST_F(ModelIoErrors, FormatAndVersion) {
  expect_error<sf::FormatError>(
      [&] { load_with("format", "pt"); },
      "m.safetensors: __metadata__ field 'format' is 'pt', expected 'shareformer'");
  expect_error<sf::FormatError>([&] { load_with("version", "2"); },
                                "__metadata__ field 'version' is '2'");
  // A Hugging Face checkpoint is not one of ours.
  expect_error<sf::FormatError>(
      [&] {
        io::load_model<float>(std::string(SHAREFORMER_GOLDEN_DIR) +
                              "/hf/bert_plain/model.safetensors");
      },
      "__metadata__ field 'format' is 'pt'");
  expect_error<sf::FormatError>(
      [&] {
        io::load_model<float>(std::string(SHAREFORMER_GOLDEN_DIR) +
                              "/hf/bert_plain/io.safetensors");
      },
      "__metadata__ has no field 'format'");
}

TEST_F(ModelIoErrors, Config) {
  const auto& c = model.config();
  expect_error<sf::FormatError>([&] { load_with("config", "{\"model_type\": "); },
                                "__metadata__ field 'config' is not valid JSON");
  expect_error<sf::FormatError>(
      [&] { load_with("config", config_with(c, "hidden_size", nullptr)); },
      "__metadata__ field 'config': missing field 'hidden_size'");
  expect_error<sf::FormatError>(
      [&] { load_with("config", config_with(c, "num_attention_heads", "3")); },
      "field 'num_attention_heads' must be an integer");
  expect_error<sf::FormatError>([&] { load_with("config", config_with(c, "vocab_size", 0)); },
                                "field 'vocab_size' = 0 is out of range");
  expect_error<sf::FormatError>([&] { load_with("config", config_with(c, "model_type", "gpt2")); },
                                "unknown model_type 'gpt2'");
  expect_error<sf::FormatError>([&] { load_with("config", config_with(c, "hidden_act", "tanh")); },
                                "unsupported hidden_act 'tanh'");
  // Sizes that disagree with the tensors.
  expect_error<sf::FormatError>([&] { load_with("config", config_with(c, "vocab_size", 41)); },
                                "tensors hold");
}

TEST_F(ModelIoErrors, LayerMapAndPooler) {
  expect_error<sf::FormatError>([&] { load_with("layer_map", "[0, 1]"); },
                                "__metadata__ field 'layer_map' is not a JSON object");
  expect_error<sf::FormatError>(
      [&] { load_with("layer_map", R"({"attention": [0, 1, 2, 2, 1, 0]})"); },
      "__metadata__ field 'layer_map' has no array 'ffn'");
  expect_error<sf::FormatError>(
      [&] {
        load_with("layer_map", R"({"attention": [0, 1, 2, 2, 1, -1], "ffn": [0, 1, 2, 2, 1, 0]})");
      },
      "'attention' holds -1");
  expect_error<sf::FormatError>(
      [&] {
        load_with("layer_map", R"({"attention": [0, 2, 2, 2, 2, 0], "ffn": [0, 1, 2, 2, 1, 0]})");
      },
      "__metadata__ field 'layer_map': LayerMap: attention slot 1 is used by no layer");
  expect_error<sf::FormatError>(
      [&] { load_with("layer_map", R"({"attention": [0, 1, 2, 0], "ffn": [0, 1, 2, 0]})"); },
      "__metadata__ field 'layer_map' has 4 layers, the config 6");
  // A valid map with fewer slots than the file stores.
  expect_error<sf::FormatError>(
      [&] {
        load_with("layer_map", R"({"attention": [0, 1, 0, 1, 0, 1], "ffn": [0, 1, 2, 2, 1, 0]})");
      },
      "tensors hold");
  expect_error<sf::FormatError>([&] { load_with("pooler", "yes"); },
                                "__metadata__ field 'pooler' is 'yes', expected 'true' or 'false'");
}

TEST_F(ModelIoErrors, Tensors) {
  expect_error<sf::FormatError>(
      [&] {
        load_edited([](io::SafetensorsWriter& w) { w.add("extra", RowMatrix<float>::Zero(2, 2)); });
      },
      "tensors hold");
  // Same element count, wrong shape.
  io::SafetensorsWriter writer;
  io::SafetensorsWriter original = io::model_writer(model);
  const auto file = io::SafetensorsFile::from_bytes(original.to_bytes(), "orig");
  for (const auto& [key, value] : file.metadata()) writer.set_metadata(key, value);
  for (const auto& t : file.tensors()) {
    const auto bytes = file.bytes(t.name);
    auto shape = t.shape;
    if (t.name == "ffn.1.in.weight") std::swap(shape[0], shape[1]);
    writer.add(t.name, t.dtype, shape, std::vector<std::uint8_t>(bytes.begin(), bytes.end()));
  }
  expect_error<sf::ShapeError>(
      [&] {
        io::load_model<float>(io::SafetensorsFile::from_bytes(writer.to_bytes(), "m.safetensors"));
      },
      "m.safetensors: tensor 'ffn.1.in.weight' has shape [48, 24], expected [24, 48]");
}
