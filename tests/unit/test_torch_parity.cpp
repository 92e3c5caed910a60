// SPDX-License-Identifier: MIT
// Parity with PyTorch: stacks loaded from the golden files of tests/golden/make_block_goldens.py
// (torch.nn.TransformerEncoderLayer and the seed's own block) reproduce PyTorch's outputs.
#include "support/reference.hpp"

#include <shareformer/io/safetensors.hpp>
#include <shareformer/shareformer.hpp>

#include <gtest/gtest.h>

#include <filesystem>
#include <string>

namespace sf = shareformer;
using sf::Index;
using sf::RowMatrix;

namespace {

struct Golden {
  std::string name;
  sf::BlockConfig config;
  Index n_layers = 0;
  std::string sharing;
  Index torch_parameters = 0;
};

std::vector<std::string> golden_files() {
  std::vector<std::string> files;
  for (const auto& entry : std::filesystem::directory_iterator(SHAREFORMER_GOLDEN_DIR)) {
    const std::string name = entry.path().filename().string();
    if (name.rfind("block_", 0) == 0 && entry.path().extension() == ".safetensors")
      files.push_back(entry.path().string());
  }
  std::sort(files.begin(), files.end());
  return files;
}

Golden describe(const sf::io::SafetensorsFile& file) {
  const auto& m = file.metadata();
  Golden g;
  g.name = file.name();
  g.config.d_model = std::stoll(m.at("d_model"));
  g.config.n_heads = std::stoll(m.at("n_heads"));
  g.config.d_ff = std::stoll(m.at("d_ff"));
  g.config.activation =
      m.at("activation") == "relu" ? sf::Activation::Relu : sf::Activation::GeluErf;
  g.config.norm = m.at("norm") == "pre" ? sf::NormPlacement::Pre : sf::NormPlacement::Post;
  g.config.eps = std::stod(m.at("eps"));
  g.config.causal = m.at("causal") == "1";
  g.config.final_norm = m.at("final_norm") == "1";
  g.n_layers = std::stoll(m.at("n_layers"));
  g.sharing = m.at("sharing");
  g.torch_parameters = std::stoll(m.at("torch_parameters"));
  return g;
}

sf::SlotPlan plan_for(const std::string& sharing, Index n) {
  if (sharing == "none") return sf::Unshared::plan(n);
  if (sharing == "ffn") return sf::SharedFfn::plan(n);
  if (sharing == "attention") return sf::SharedAttention::plan(n);
  if (sharing == "all") return sf::SharedAll::plan(n);
  throw std::runtime_error("unknown sharing " + sharing);
}

// PyTorch stores Linear weights [out, in]; the library keeps (in, out).
template <typename T>
sf::Stack<sf::LayerMap, T> load(const sf::io::SafetensorsFile& file, const Golden& g) {
  const Index d = g.config.d_model, f = g.config.d_ff;
  sf::Stack<sf::LayerMap, T> stack(g.config, g.n_layers,
                                   sf::LayerMap::from_plan(plan_for(g.sharing, g.n_layers)));
  for (std::size_t a = 0; a < stack.attention_slots().size(); ++a) {
    const std::string p = "attention." + std::to_string(a) + ".";
    auto& s = stack.attention_slots()[a];
    s.attention().qkv().weight() = file.matrix<T>(p + "in_proj_weight", 3 * d, d).transpose();
    s.attention().qkv().bias() = file.vector<T>(p + "in_proj_bias", 3 * d);
    s.attention().out().weight() = file.matrix<T>(p + "out_proj_weight", d, d).transpose();
    s.attention().out().bias() = file.vector<T>(p + "out_proj_bias", d);
    s.norm().gamma() = file.vector<T>(p + "norm_weight", d);
    s.norm().beta() = file.vector<T>(p + "norm_bias", d);
  }
  for (std::size_t i = 0; i < stack.ffn_slots().size(); ++i) {
    const std::string p = "ffn." + std::to_string(i) + ".";
    auto& s = stack.ffn_slots()[i];
    s.ffn().in().weight() = file.matrix<T>(p + "linear1_weight", f, d).transpose();
    s.ffn().in().bias() = file.vector<T>(p + "linear1_bias", f);
    s.ffn().out().weight() = file.matrix<T>(p + "linear2_weight", d, f).transpose();
    s.ffn().out().bias() = file.vector<T>(p + "linear2_bias", d);
    s.norm().gamma() = file.vector<T>(p + "norm_weight", d);
    s.norm().beta() = file.vector<T>(p + "norm_bias", d);
  }
  if (g.config.has_final_norm()) {
    stack.final_norm().gamma() = file.vector<T>("final_norm_weight", d);
    stack.final_norm().beta() = file.vector<T>("final_norm_bias", d);
  }
  return stack;
}

template <typename T>
void check_parity(const std::string& path, double tolerance) {
  SCOPED_TRACE(path);
  const auto file = sf::io::SafetensorsFile::open(path);
  const Golden g = describe(file);
  const auto stack = load<T>(file, g);
  EXPECT_EQ(stack.parameter_count(), g.torch_parameters);

  const auto lengths = file.values<std::int64_t>("lengths");
  const auto& shape = file.info("input").shape;
  ASSERT_EQ(shape.size(), 3u);
  const Index batch = shape[0], seq_len = shape[1];
  const auto batch_layout =
      sf::Batch::padded(seq_len, std::vector<Index>(lengths.begin(), lengths.end()));
  const auto in = file.values<double>("input");
  const auto out = file.values<double>("output");
  const RowMatrix<double> x =
      Eigen::Map<const RowMatrix<double>>(in.data(), batch * seq_len, g.config.d_model);
  const RowMatrix<double> expected =
      Eigen::Map<const RowMatrix<double>>(out.data(), batch * seq_len, g.config.d_model);

  for (int threads : {1, 2}) {
    const RowMatrix<T> y = stack.forward(x.cast<T>(), batch_layout, threads);
    // Every position, padded query rows included: PyTorch's slow path computes them too.
    EXPECT_LT(sf::testing::max_abs_diff(y, expected), tolerance) << "threads " << threads;
  }
}

}  // namespace

TEST(TorchParity, GoldenFilesArePresent) { EXPECT_GE(golden_files().size(), 10u); }

TEST(TorchParity, FloatWithin1e5) {
  for (const auto& path : golden_files()) check_parity<float>(path, 1e-5);
}

TEST(TorchParity, DoubleWithin1e10) {
  for (const auto& path : golden_files()) check_parity<double>(path, 1e-10);
}
