// SPDX-License-Identifier: MIT
// Parameter, byte and FLOP accounting against PyTorch's counts and independent tallies.
#include <shareformer/shareformer.hpp>

#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include <fstream>

namespace sf = shareformer;
using sf::Index;

namespace {

sf::BlockConfig config(Index d, Index h, Index f) {
  sf::BlockConfig c;
  c.d_model = d;
  c.n_heads = h;
  c.d_ff = f;
  return c;
}

nlohmann::json torch_counts() {
  std::ifstream in(std::string(SHAREFORMER_GOLDEN_DIR) + "/seed_counts.json");
  EXPECT_TRUE(in.good()) << "missing seed_counts.json";
  return nlohmann::json::parse(in);
}

template <typename Policy>
Index count(const sf::BlockConfig& c, Index layers) {
  return sf::Stack<Policy>(c, layers).parameter_count();
}

// The same count without allocating the weights: the policy's plan through count::stack.
template <typename Policy>
Index planned_count(const sf::BlockConfig& c, Index layers) {
  const sf::SlotPlan plan = Policy::plan(layers);
  return sf::count::stack(c, plan.attention_slots, plan.ffn_slots).total();
}

}  // namespace

TEST(Accounting, SeedConfigurationMatchesTheIssueFigures) {
  const auto c = config(512, 8, 2048);
  EXPECT_EQ(count<sf::Unshared>(c, 12), 37828608);
  EXPECT_EQ(count<sf::SharedFfn>(c, 12), 14720512);
  EXPECT_EQ(count<sf::SharedAttention>(c, 12), 26260480);
  EXPECT_EQ(count<sf::SharedAll>(c, 12), 3152384);
}

// seed_counts.json is written by tests/golden/make_block_goldens.py from PyTorch's
// sum(p.numel() for p in model.parameters()) over the seed's code and nn.TransformerEncoderLayer.
TEST(Accounting, MatchesPyTorchCountsForEveryPolicy) {
  const auto counts = torch_counts();
  ASSERT_FALSE(counts.empty());
  for (const auto& [name, entry] : counts.items()) {
    SCOPED_TRACE(name);
    const auto c = config(entry.at("d_model").get<Index>(), entry.at("n_heads").get<Index>(),
                          entry.at("d_ff").get<Index>());
    const Index layers = entry.at("n_layers").get<Index>();
    const auto& torch = entry.at("counts");
    EXPECT_EQ(planned_count<sf::Unshared>(c, layers), torch.at("none").get<Index>());
    EXPECT_EQ(planned_count<sf::SharedFfn>(c, layers), torch.at("ffn").get<Index>());
    EXPECT_EQ(planned_count<sf::SharedAttention>(c, layers), torch.at("attention").get<Index>());
    EXPECT_EQ(planned_count<sf::SharedAll>(c, layers), torch.at("all").get<Index>());
  }
}

TEST(Accounting, AnalyticCountEqualsTheTensorsTheStackOwns) {
  auto c = config(24, 4, 40);
  c.norm = sf::NormPlacement::Pre;
  const sf::Stack<sf::CycleRev<2>, double> stack(c, 6);
  Index owned = stack.final_norm().parameter_count();
  for (const auto& a : stack.attention_slots()) owned += a.parameter_count();
  for (const auto& f : stack.ffn_slots()) owned += f.parameter_count();
  EXPECT_EQ(stack.parameter_count(), owned);
  EXPECT_EQ(stack.weight_bytes(), owned * 8);
  EXPECT_EQ(stack.unshared_parameter_count(), 6 * sf::count::block(c).total() + 2 * Index{24});
  const auto p = stack.parameters();
  EXPECT_EQ(p.attention, 2 * (4 * 24 * 24 + 4 * 24));
  EXPECT_EQ(p.ffn, 2 * (2 * 24 * 40 + 40 + 24));
  EXPECT_EQ(p.norms, 2 * 2 * (2 * 24) + 2 * 24);
}

TEST(Accounting, FlopsDoNotDependOnSharing) {
  const auto c = config(768, 12, 3072);
  const auto a = sf::Stack<sf::SharedAll>(c, 12).flops(8, 128);
  const auto b = sf::Stack<sf::Unshared>(c, 12).flops(8, 128);
  EXPECT_EQ(a.matmul, b.matmul);
  EXPECT_EQ(a.elementwise, b.elementwise);
}

// An independent tally, GEMM by GEMM, of the multiply-adds of one layer.
TEST(Accounting, LayerFlopsEqualTheSumOfItsProducts) {
  const std::int64_t d = 64, h = 4, f = 96, b = 3, s = 10, t = b * s, dh = d / h;
  const auto flops = sf::count::layer_flops(config(d, h, f), b, s);
  std::int64_t macs = 0;
  macs += t * d * (3 * d);        // fused QKV
  macs += b * h * s * s * dh;     // Q K^T per (sequence, head)
  macs += b * h * s * s * dh;     // P V
  macs += t * d * d;              // output projection
  macs += t * d * f + t * f * d;  // FFN
  EXPECT_EQ(flops.matmul, 2 * macs);
  EXPECT_GT(flops.elementwise, 0);
  EXPECT_EQ(sf::count::forward_flops(config(d, h, f), 12, b, s).matmul, 12 * (2 * macs));
}

// Hugging Face's AlbertModel / BertModel with pooler, as PyTorch counts them (issue 3's figures).
TEST(Accounting, EncoderCountsMatchHuggingFace) {
  sf::EncoderConfig albert;
  albert.model_type = sf::ModelType::Albert;
  albert.vocab_size = 30000;
  albert.embedding_size = 128;
  EXPECT_EQ(sf::count::encoder_parameters(albert, 1, 1), 11683584);  // albert-base-v2
  const sf::EncoderConfig bert;                                      // bert-base-uncased defaults
  EXPECT_EQ(sf::count::encoder_parameters(bert, 12, 12), 109482240);
}
