// SPDX-License-Identifier: MIT
// Encoder and the Hugging Face loader against golden checkpoints from a PyTorch re-implementation.
#include <gtest/gtest.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <functional>
#include <iostream>
#include <shareformer/shareformer.hpp>
#include <string>

#include "support/golden.hpp"
#include "support/reference.hpp"
#include "support/scratch.hpp"

namespace sf = shareformer;
namespace io = shareformer::io;
namespace fs = std::filesystem;
using sf::IdMatrix;
using sf::Index;
using sf::RowMatrix;
using sf::testing::golden;
using sf::testing::Golden;
using sf::testing::read_golden;
using sf::testing::unmasked_error;

namespace {

using shareformer::testing::expect_error;
using shareformer::testing::TempDir;

nlohmann::json read_json(const std::string& path) {
  std::ifstream in(path);
  return nlohmann::json::parse(in);
}

void write_text(const std::string& path, const std::string& text) {
  std::ofstream out(path, std::ios::binary);
  out << text;
}

/// Copies golden model `name` into `dir`, letting `edit_config` change config.json and `edit`
/// decide, per tensor, whether it is copied as is (return false) or was handled (return true).
void copy_model(const std::string& name, const std::string& dir,
                const std::function<void(nlohmann::json&)>& edit_config,
                const std::function<bool(const io::TensorInfo&, const io::SafetensorsFile&,
                                         io::SafetensorsWriter&)>& edit) {
  nlohmann::json config = read_json(golden(name) + "/config.json");
  if (edit_config) edit_config(config);
  write_text(dir + "/config.json", config.dump(2));
  const auto file = io::SafetensorsFile::open(golden(name) + "/model.safetensors");
  io::SafetensorsWriter writer;
  for (const auto& t : file.tensors()) {
    if (edit && edit(t, file, writer)) continue;
    const auto bytes = file.bytes(t.name);
    writer.add(t.name, t.dtype, t.shape, std::vector<std::uint8_t>(bytes.begin(), bytes.end()));
  }
  writer.write(dir + "/model.safetensors");
}

const char* const golden_cases[] = {
    "albert_groups",    "albert_classic", "albert_masked_lm", "albert_bf16", "bert_plain",
    "bert_pretraining", "bert_gelu_new",  "bert_head6",       "bert_seq1",   "bert_f16"};

}  // namespace

// ---------------------------------------------------------------------------------------------
// Golden checkpoints

class HfGolden : public ::testing::TestWithParam<const char*> {};

TEST_P(HfGolden, MatchesPyTorchForward) {
  const std::string name = GetParam();
  const Golden g = read_golden(name);
  const auto model = io::load_hf_model<float>(golden(name));
  const auto out = model.forward(g.input_ids, g.token_type_ids, g.attention_mask, 2);
  const double hidden_err = unmasked_error(out.last_hidden_state, g);
  const double pooler_err = sf::testing::max_abs_diff(out.pooler_output, g.pooler_output);
  std::cout << "[ golden   ] " << name << ": last_hidden_state " << hidden_err << ", pooler_output "
            << pooler_err << "\n";
  EXPECT_LT(hidden_err, 2e-4);
  EXPECT_LT(pooler_err, 2e-4);
  EXPECT_TRUE(model.has_pooler());

  // In double, from the same files: agrees with the float32 reference as closely.
  const auto model64 = io::load_hf_model<double>(golden(name) + "/config.json");
  const auto out64 = model64.forward(g.input_ids, g.token_type_ids, g.attention_mask, 1);
  EXPECT_LT(unmasked_error(out64.last_hidden_state, g), 2e-4);
  EXPECT_LT(sf::testing::max_abs_diff(out64.pooler_output, g.pooler_output), 2e-4);
}

TEST_P(HfGolden, ParameterCountMatchesAccountingAndFile) {
  const std::string name = GetParam();
  const auto model = io::load_hf_model<float>(golden(name));
  const auto& plan = model.stack().plan();
  EXPECT_EQ(model.parameter_count(),
            sf::count::encoder_parameters(model.config(), plan.attention_slots, plan.ffn_slots));
  // Every encoder tensor of the file (heads and buffers aside) is used exactly once.
  const auto file = io::SafetensorsFile::open(golden(name) + "/model.safetensors");
  std::int64_t numel = 0;
  for (const auto& t : file.tensors()) {
    std::string n = t.name;
    for (const char* prefix : {"albert.", "bert."})
      if (n.rfind(prefix, 0) == 0) n = n.substr(std::string(prefix).size());
    const bool encoder =
        n.rfind("embeddings.", 0) == 0 || n.rfind("encoder.", 0) == 0 || n.rfind("pooler", 0) == 0;
    if (encoder && n.find("position_ids") == std::string::npos) numel += t.numel();
  }
  EXPECT_EQ(model.parameter_count(), numel);
}

TEST_P(HfGolden, ThreadsAndWorkspaceReuseDoNotChangeResults) {
  const std::string name = GetParam();
  const Golden g = read_golden(name);
  const auto model = io::load_hf_model<float>(golden(name));
  sf::Workspace<float> ws;
  sf::EncoderOutput<float> a, b;
  model.forward(g.input_ids, g.token_type_ids, g.attention_mask, a, ws, 1);
  // Another shape in between, then the first again with the same workspace.
  model.forward(g.input_ids.leftCols(1), IdMatrix(), IdMatrix(), b, ws, 2);
  model.forward(g.input_ids, g.token_type_ids, g.attention_mask, b, ws, 2);
  EXPECT_LT(sf::testing::max_abs_diff(a.last_hidden_state, b.last_hidden_state), 1e-5);
  EXPECT_LT(sf::testing::max_abs_diff(a.pooler_output, b.pooler_output), 1e-5);
}

INSTANTIATE_TEST_SUITE_P(Checkpoints, HfGolden, ::testing::ValuesIn(golden_cases));

TEST(HfLoader, ReadsConfigFields) {
  const auto groups = io::read_hf_config(golden("albert_groups"));
  EXPECT_EQ(groups.model_type, sf::ModelType::Albert);
  EXPECT_EQ(groups.embedding_size, 16);
  EXPECT_EQ(groups.d_model, 32);
  EXPECT_EQ(groups.num_hidden_groups, 2);
  EXPECT_EQ(groups.inner_group_num, 2);
  EXPECT_EQ(groups.stack_layers(), 8);
  EXPECT_EQ(groups.activation, sf::Activation::GeluTanh);

  const auto plain = io::read_hf_config(golden("bert_plain") + "/config.json");
  EXPECT_EQ(plain.model_type, sf::ModelType::Bert);
  EXPECT_EQ(plain.embedding_size, 32);
  EXPECT_EQ(plain.type_vocab_size, 2);  // absent from the file: BertConfig's default
  EXPECT_EQ(plain.eps, 1e-12);          // likewise
  EXPECT_EQ(plain.activation, sf::Activation::GeluErf);

  EXPECT_EQ(io::read_hf_config(golden("bert_gelu_new")).eps, 1e-2);
  EXPECT_EQ(io::read_hf_config(golden("bert_gelu_new")).type_vocab_size, 3);
  EXPECT_EQ(io::read_hf_config(golden("bert_head6")).activation, sf::Activation::GeluTanh);
  EXPECT_EQ(io::read_hf_config(golden("bert_seq1")).activation, sf::Activation::Relu);
}

TEST(HfLoader, DefaultsFollowHuggingFace) {
  // AlbertConfig() is albert-xxlarge; BertConfig() is bert-base-uncased.
  const auto albert = io::parse_hf_config(nlohmann::json{{"model_type", "albert"}});
  EXPECT_EQ(albert.vocab_size, 30000);
  EXPECT_EQ(albert.embedding_size, 128);
  EXPECT_EQ(albert.d_model, 4096);
  EXPECT_EQ(albert.n_heads, 64);
  EXPECT_EQ(albert.d_ff, 16384);
  EXPECT_EQ(albert.n_layers, 12);
  EXPECT_EQ(albert.activation, sf::Activation::GeluTanh);
  EXPECT_EQ(albert.max_position_embeddings, 512);
  const auto bert = io::parse_hf_config(nlohmann::json{{"model_type", "bert"}});
  EXPECT_EQ(bert.vocab_size, 30522);
  EXPECT_EQ(bert.d_model, 768);
  EXPECT_EQ(bert.n_heads, 12);
  EXPECT_EQ(bert.d_ff, 3072);
  EXPECT_EQ(bert.activation, sf::Activation::GeluErf);
  EXPECT_EQ(bert.eps, 1e-12);
  // albert-xlarge: 16 heads of 128.
  const auto xlarge = io::parse_hf_config(nlohmann::json{{"model_type", "albert"},
                                                         {"hidden_size", 2048},
                                                         {"num_attention_heads", 16},
                                                         {"intermediate_size", 8192},
                                                         {"num_hidden_layers", 24}});
  EXPECT_EQ(xlarge.block().d_head(), 128);
  EXPECT_EQ(sf::count::encoder_parameters(xlarge, 1, 1),
            58'724'864);  // AlbertModel albert-xlarge-v2
}

TEST(HfLoader, GroupsShareByAddress) {
  const auto model = io::load_hf_model<float>(golden("albert_groups"));
  const auto& stack = model.stack();
  ASSERT_EQ(stack.n_layers(), 8);
  EXPECT_EQ(stack.attention_slots().size(), 4u);
  // Layers 0-3 run group 0 (inner blocks 0, 1, 0, 1), layers 4-7 group 1.
  EXPECT_EQ(&stack.attention(0), &stack.attention(2));
  EXPECT_EQ(&stack.ffn(1), &stack.ffn(3));
  EXPECT_NE(&stack.attention(0), &stack.attention(1));
  EXPECT_NE(&stack.attention(2), &stack.attention(4));
  EXPECT_EQ(&stack.ffn(5), &stack.ffn(7));
}

TEST(HfLoader, MissingPoolerGivesZeroPooler) {
  TempDir dir;
  copy_model("bert_plain", dir.str(), nullptr,
             [](const io::TensorInfo& t, const io::SafetensorsFile&, io::SafetensorsWriter&) {
               return t.name.rfind("pooler.", 0) == 0;
             });
  const auto model = io::load_hf_model<float>(dir.str());
  EXPECT_FALSE(model.has_pooler());
  const Golden g = read_golden("bert_plain");
  const auto out = model.forward(g.input_ids, g.token_type_ids, g.attention_mask);
  EXPECT_LT(unmasked_error(out.last_hidden_state, g), 2e-4);
  EXPECT_EQ(out.pooler_output.cwiseAbs().maxCoeff(), 0.0f);
}

// ---------------------------------------------------------------------------------------------
// Broken checkpoints: each error names the file and the culprit

TEST(HfLoaderErrors, MissingTensor) {
  TempDir dir;
  copy_model("bert_plain", dir.str(), nullptr,
             [](const io::TensorInfo& t, const io::SafetensorsFile&, io::SafetensorsWriter&) {
               return t.name == "encoder.layer.1.output.dense.weight";
             });
  expect_error<sf::FormatError>(
      [&] { io::load_hf_model<float>(dir.str()); },
      "model.safetensors: no tensor 'encoder.layer.1.output.dense.weight'");
}

TEST(HfLoaderErrors, MissingTensorWithPrefix) {
  TempDir dir;
  copy_model("albert_masked_lm", dir.str(), nullptr,
             [](const io::TensorInfo& t, const io::SafetensorsFile&, io::SafetensorsWriter&) {
               return t.name ==
                      "albert.encoder.albert_layer_groups.0.albert_layers.0.ffn_output.bias";
             });
  expect_error<sf::FormatError>(
      [&] { io::load_hf_model<float>(dir.str()); },
      "no tensor 'albert.encoder.albert_layer_groups.0.albert_layers.0.ffn_output.bias'");
}

TEST(HfLoaderErrors, MisShapedTensor) {
  TempDir dir;
  copy_model(
      "bert_plain", dir.str(), nullptr,
      [](const io::TensorInfo& t, const io::SafetensorsFile& file, io::SafetensorsWriter& w) {
        if (t.name != "encoder.layer.1.output.dense.weight") return false;
        // The transpose of what the layer needs: [in, out] instead of [out, in].
        const RowMatrix<float> m = file.matrix<float>(t.name);
        w.add(t.name, RowMatrix<float>(m.transpose()));
        return true;
      });
  expect_error<sf::ShapeError>([&] { io::load_hf_model<float>(dir.str()); },
                               "model.safetensors: tensor 'encoder.layer.1.output.dense.weight' "
                               "has shape [64, 32], expected [32, 64]");
}

TEST(HfLoaderErrors, WeightsForMoreLayersThanTheConfig) {
  TempDir dir;
  copy_model(
      "bert_plain", dir.str(), [](nlohmann::json& c) { c["num_hidden_layers"] = 1; }, nullptr);
  expect_error<sf::FormatError>([&] { io::load_hf_model<float>(dir.str()); },
                                "tensor 'encoder.layer.1.");
}

TEST(HfLoaderErrors, IntegerWeights) {
  TempDir dir;
  copy_model("bert_plain", dir.str(), nullptr,
             [](const io::TensorInfo& t, const io::SafetensorsFile&, io::SafetensorsWriter& w) {
               if (t.name != "pooler.dense.bias") return false;
               w.add(t.name, t.shape,
                     std::vector<std::int64_t>(static_cast<std::size_t>(t.numel()), 0));
               return true;
             });
  expect_error<sf::FormatError>([&] { io::load_hf_model<float>(dir.str()); },
                                "tensor 'pooler.dense.bias' has dtype I64");
}

TEST(HfLoaderErrors, NotAnEncoderCheckpoint) {
  TempDir dir;
  copy_model("bert_plain", dir.str(), nullptr,
             [](const io::TensorInfo& t, const io::SafetensorsFile&, io::SafetensorsWriter&) {
               return t.name == "embeddings.word_embeddings.weight";
             });
  expect_error<sf::FormatError>([&] { io::load_hf_model<float>(dir.str()); },
                                "no tensor 'embeddings.word_embeddings.weight'");
}

TEST(HfLoaderErrors, UnknownModelType) {
  TempDir dir;
  copy_model(
      "bert_plain", dir.str(), [](nlohmann::json& c) { c["model_type"] = "roberta"; }, nullptr);
  expect_error<sf::ConfigError>([&] { io::load_hf_model<float>(dir.str()); },
                                "config.json: unknown model_type 'roberta'");
  copy_model(
      "bert_plain", dir.str(), [](nlohmann::json& c) { c.erase("model_type"); }, nullptr);
  expect_error<sf::ConfigError>([&] { io::load_hf_model<float>(dir.str()); },
                                "config.json: missing field 'model_type'");
}

TEST(HfLoaderErrors, BadHiddenAct) {
  TempDir dir;
  copy_model(
      "bert_plain", dir.str(), [](nlohmann::json& c) { c["hidden_act"] = "swish"; }, nullptr);
  expect_error<sf::ConfigError>([&] { io::load_hf_model<float>(dir.str()); },
                                "config.json: unsupported hidden_act 'swish'");
  copy_model(
      "bert_plain", dir.str(), [](nlohmann::json& c) { c["hidden_act"] = 3; }, nullptr);
  expect_error<sf::ConfigError>([&] { io::load_hf_model<float>(dir.str()); },
                                "field 'hidden_act' must be a string");
}

TEST(HfLoaderErrors, FieldOutOfRangeOrOfTheWrongType) {
  TempDir dir;
  const auto with = [&](const char* field, nlohmann::json value) {
    copy_model(
        "albert_groups", dir.str(), [&](nlohmann::json& c) { c[field] = value; }, nullptr);
    return dir.str();
  };
  expect_error<sf::ConfigError>([&] { io::load_hf_model<float>(with("num_attention_heads", 0)); },
                                "config.json: field 'num_attention_heads' = 0 is out of range");
  expect_error<sf::ConfigError>([&] { io::load_hf_model<float>(with("vocab_size", -5)); },
                                "field 'vocab_size' = -5 is out of range");
  expect_error<sf::ConfigError>([&] { io::load_hf_model<float>(with("hidden_size", 1ll << 40)); },
                                "field 'hidden_size' = 1099511627776 is out of range");
  expect_error<sf::ConfigError>([&] { io::load_hf_model<float>(with("hidden_size", "32")); },
                                "field 'hidden_size' must be an integer, got string \"32\"");
  expect_error<sf::ConfigError>([&] { io::load_hf_model<float>(with("intermediate_size", 64.5)); },
                                "field 'intermediate_size' must be an integer");
  expect_error<sf::ConfigError>([&] { io::load_hf_model<float>(with("layer_norm_eps", 0)); },
                                "field 'layer_norm_eps' = 0 is out of range");
  expect_error<sf::ConfigError>([&] { io::load_hf_model<float>(with("layer_norm_eps", "1e-12")); },
                                "field 'layer_norm_eps' must be a number");
  expect_error<sf::ConfigError>([&] { io::load_hf_model<float>(with("num_attention_heads", 5)); },
                                "hidden_size (32) is not divisible by num_attention_heads (5)");
  expect_error<sf::ConfigError>([&] { io::load_hf_model<float>(with("num_hidden_groups", 3)); },
                                "num_hidden_layers (4) is not divisible by num_hidden_groups (3)");
  expect_error<sf::ConfigError>(
      [&] { io::load_hf_model<float>(with("position_embedding_type", "relative_key")); },
      "position_embedding_type 'relative_key' is not supported");
}

TEST(HfLoaderErrors, FilesMissingOrNotJson) {
  TempDir dir;
  expect_error<sf::IoError>([&] { io::load_hf_model<float>(dir / "nowhere"); },
                            "no such file or directory");
  write_text(dir / "config.json", "{\"model_type\": \"bert\",");
  expect_error<sf::IoError>([&] { io::load_hf_model<float>(dir.str()); },
                            "model.safetensors: no such file");
  write_text(dir / "pytorch_model.bin", "");
  expect_error<sf::IoError>([&] { io::load_hf_model<float>(dir.str()); },
                            "convert pytorch_model.bin");
  fs::copy_file(golden("bert_plain") + "/model.safetensors", dir / "model.safetensors");
  expect_error<sf::FormatError>([&] { io::load_hf_model<float>(dir.str()); },
                                "config.json: not valid JSON");
  write_text(dir / "config.json", "[1, 2]");
  expect_error<sf::ConfigError>([&] { io::load_hf_model<float>(dir.str()); },
                                "expected a JSON object");
}

// ---------------------------------------------------------------------------------------------
// Input validation at forward

class EncoderInputs : public ::testing::Test {
 protected:
  sf::Encoder<float> model =
      io::load_hf_model<float>(golden("bert_plain"));  // vocab 100, 16 positions
};

TEST_F(EncoderInputs, TokenIdOutsideVocabulary) {
  IdMatrix ids = IdMatrix::Constant(2, 4, 7);
  ids(1, 2) = 100;
  expect_error<sf::ShapeError>([&] { model.forward(ids); },
                               "input_ids[1, 2] = 100 is outside the vocabulary [0, 100)");
  ids(1, 2) = -1;
  expect_error<sf::ShapeError>([&] { model.forward(ids); },
                               "input_ids[1, 2] = -1 is outside the vocabulary");
}

TEST_F(EncoderInputs, TokenTypeOutOfRange) {
  const IdMatrix ids = IdMatrix::Constant(1, 3, 7);
  IdMatrix types = IdMatrix::Zero(1, 3);
  types(0, 1) = 2;
  expect_error<sf::ShapeError>([&] { model.forward(ids, types); },
                               "token_type_ids[0, 1] = 2 is outside [0, 2)");
}

TEST_F(EncoderInputs, SequenceLongerThanPositions) {
  expect_error<sf::ShapeError>([&] { model.forward(IdMatrix::Constant(1, 17, 3)); },
                               "sequence length 17 exceeds max_position_embeddings (16)");
  EXPECT_NO_THROW(model.forward(IdMatrix::Constant(1, 16, 3)));
}

TEST_F(EncoderInputs, MismatchedShapes) {
  const IdMatrix ids = IdMatrix::Constant(2, 4, 7);
  expect_error<sf::ShapeError>(
      [&] { model.forward(ids, IdMatrix(), IdMatrix::Ones(2, 3)); },
      "attention_mask has shape [2, 3], expected the shape of input_ids [2, 4]");
  expect_error<sf::ShapeError>(
      [&] { model.forward(ids, IdMatrix::Zero(3, 4)); },
      "token_type_ids has shape [3, 4], expected the shape of input_ids [2, 4]");
  expect_error<sf::ShapeError>([&] { model.forward(IdMatrix(0, 4)); },
                               "input_ids has shape [0, 4]");
}

TEST_F(EncoderInputs, MaskValuesAreZeroOrOne) {
  const IdMatrix ids = IdMatrix::Constant(1, 3, 7);
  IdMatrix mask = IdMatrix::Ones(1, 3);
  mask(0, 2) = 2;
  expect_error<sf::ShapeError>([&] { model.forward(ids, IdMatrix(), mask); },
                               "attention_mask[0, 2] = 2, expected 0 or 1");
}

TEST_F(EncoderInputs, DefaultsAreZeroTypesAndFullMask) {
  const Golden g = read_golden("bert_plain");
  const auto explicit_out =
      model.forward(g.input_ids, IdMatrix::Zero(g.input_ids.rows(), g.input_ids.cols()),
                    IdMatrix::Ones(g.input_ids.rows(), g.input_ids.cols()), 1);
  const auto default_out = model.forward(g.input_ids, IdMatrix(), IdMatrix(), 1);
  EXPECT_EQ(
      sf::testing::max_abs_diff(explicit_out.last_hidden_state, default_out.last_hidden_state),
      0.0);
}

// ---------------------------------------------------------------------------------------------
// The library's own encoders: any layer map, against a naive double-precision reference

namespace {

sf::EncoderConfig small_config(sf::ModelType type) {
  sf::EncoderConfig c;
  c.model_type = type;
  c.vocab_size = 50;
  c.embedding_size = type == sf::ModelType::Albert ? 12 : 24;
  c.d_model = 24;
  c.n_heads = 4;
  c.d_ff = 40;
  c.n_layers = 6;
  c.max_position_embeddings = 10;
  c.type_vocab_size = 3;
  c.activation = sf::Activation::GeluTanh;
  return c;
}

/// The encoder's forward from naive loops: embeddings, LayerNorm, projection, stack, pooler.
RowMatrix<double> naive_encoder(const sf::Encoder<double>& m, const IdMatrix& ids,
                                const IdMatrix& types, const IdMatrix& mask,
                                RowMatrix<double>& pooled) {
  namespace naive = sf::testing::naive;
  const Index batch = ids.rows(), seq_len = ids.cols();
  RowMatrix<double> x(batch * seq_len, m.config().embedding_size);
  for (Index b = 0; b < batch; ++b)
    for (Index s = 0; s < seq_len; ++s)
      x.row(b * seq_len + s) = m.word_embeddings().row(ids(b, s)) +
                               m.token_type_embeddings().row(types(b, s)) +
                               m.position_embeddings().row(s);
  x = naive::layer_norm(x, m.embedding_norm().gamma(), m.embedding_norm().beta(), m.config().eps);
  if (m.has_embedding_projection())
    x = naive::linear(x, m.embedding_projection().weight(), m.embedding_projection().bias());
  RowMatrix<double> h = naive::stack(m.stack(), x, sf::Batch::from_mask(mask));
  RowMatrix<double> first(batch, h.cols());
  for (Index b = 0; b < batch; ++b) first.row(b) = h.row(b * seq_len);
  pooled = naive::linear(first, m.pooler().weight(), m.pooler().bias()).array().tanh().matrix();
  return h;
}

}  // namespace

TEST(Encoder, AnyLayerMapMatchesNaiveReference) {
  IdMatrix ids(2, 6), types(2, 6), mask(2, 6);
  ids << 1, 5, 9, 49, 0, 3, 7, 7, 2, 30, 4, 11;
  types << 0, 0, 1, 1, 2, 2, 0, 1, 0, 1, 0, 1;
  mask << 1, 1, 1, 1, 1, 1, 1, 0, 1, 1, 0, 0;  // not a prefix in the second sequence
  const std::vector<sf::LayerMap> maps = {sf::LayerMap::from_plan(sf::Unshared::plan(6)),
                                          sf::LayerMap::from_plan(sf::SharedAll::plan(6)),
                                          sf::LayerMap::from_plan(sf::CycleRev<3>::plan(6)),
                                          sf::LayerMap::from_plan(sf::SharedFfn::plan(6))};
  for (const auto type : {sf::ModelType::Albert, sf::ModelType::Bert})
    for (const auto& map : maps) {
      sf::Encoder<double> m(small_config(type), map);
      m.randomize(7, 0.2, 0.1, 0.1);
      const auto& plan = m.stack().plan();
      EXPECT_EQ(m.parameter_count(),
                sf::count::encoder_parameters(m.config(), plan.attention_slots, plan.ffn_slots));
      RowMatrix<double> pooled;
      const RowMatrix<double> expected = naive_encoder(m, ids, types, mask, pooled);
      const auto out = m.forward(ids, types, mask, 2);
      EXPECT_LT(sf::testing::max_abs_diff(out.last_hidden_state, expected), 1e-11);
      EXPECT_LT(sf::testing::max_abs_diff(out.pooler_output, pooled), 1e-11);
    }
}

TEST(Encoder, DefaultLayerMapAndMismatchedMap) {
  auto c = small_config(sf::ModelType::Albert);
  c.num_hidden_groups = 3;
  c.inner_group_num = 2;
  const sf::Encoder<float> albert(c);
  EXPECT_EQ(albert.stack().n_layers(), 12);
  EXPECT_EQ(albert.stack().attention_slots().size(), 6u);
  EXPECT_EQ(albert.parameter_count(), sf::count::encoder_parameters(c, 6, 6));
  EXPECT_EQ(albert.unshared_parameter_count(), sf::count::encoder_parameters(c, 12, 12));
  expect_error<sf::ConfigError>(
      [&] { sf::Encoder<float>(c, sf::LayerMap::from_plan(sf::SharedAll::plan(6))); },
      "the table has 6 layers, the stack 12");
  auto bad = small_config(sf::ModelType::Bert);
  bad.embedding_size = 12;
  expect_error<sf::ConfigError>([&] { sf::Encoder<float>{bad}; }, "embedding_size == hidden_size");
}
