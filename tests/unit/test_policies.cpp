// SPDX-License-Identifier: MIT
// Sharing policies: slot tables, sharing by address, and the errors for impossible layouts.
#include <shareformer/shareformer.hpp>

#include <gtest/gtest.h>

#include <vector>

namespace sf = shareformer;
using sf::Index;
using V = std::vector<Index>;

TEST(Policies, NamedTagsShareWhatTheirNamesSay) {
  EXPECT_EQ(sf::Unshared::plan(4).attention, (V{0, 1, 2, 3}));
  EXPECT_EQ(sf::Unshared::plan(4).ffn, (V{0, 1, 2, 3}));
  EXPECT_EQ(sf::SharedFfn::plan(4).attention, (V{0, 1, 2, 3}));
  EXPECT_EQ(sf::SharedFfn::plan(4).ffn, (V{0, 0, 0, 0}));
  EXPECT_EQ(sf::SharedAttention::plan(4).attention, (V{0, 0, 0, 0}));
  EXPECT_EQ(sf::SharedAttention::plan(4).ffn, (V{0, 1, 2, 3}));
  EXPECT_EQ(sf::SharedAll::plan(4).attention, (V{0, 0, 0, 0}));
  EXPECT_EQ(sf::SharedAll::plan(4).ffn_slots, 1);
  EXPECT_TRUE((std::is_same_v<sf::Albert, sf::SharedAll>));
}

TEST(Policies, TakaseKiyonoTables) {
  EXPECT_EQ(sf::Sequence<3>::plan(6).attention, (V{0, 0, 1, 1, 2, 2}));
  EXPECT_EQ(sf::Cycle<3>::plan(6).attention, (V{0, 1, 2, 0, 1, 2}));
  EXPECT_EQ(sf::CycleRev<3>::plan(6).attention, (V{0, 1, 2, 2, 1, 0}));
  EXPECT_EQ(sf::CycleRev<3>::plan(6).ffn, (V{0, 1, 2, 2, 1, 0}));
  // The paper's f(i) for N = 7, M = 3: the first (ceil(7/3) - 1) * 3 = 6 layers cycle.
  EXPECT_EQ(sf::CycleRev<3>::plan(7).attention, (V{0, 1, 2, 0, 1, 2, 2}));
  EXPECT_EQ(sf::CycleRev<2>::plan(8).attention, (V{0, 1, 0, 1, 0, 1, 1, 0}));
  EXPECT_EQ(sf::Cycle<3>::plan(7).attention_slots, 3);
}

TEST(Policies, RepeatAndGrouped) {
  EXPECT_EQ(sf::Repeat<2>::plan(6).attention, (V{0, 0, 1, 1, 2, 2}));
  EXPECT_EQ(sf::Repeat<2>::plan(6).attention_slots, 3);
  // ALBERT: 4 outer layers in 2 groups of 2 inner layers -> 8 block applications.
  EXPECT_EQ((sf::Grouped<2, 2>::plan(8).attention), (V{0, 1, 0, 1, 2, 3, 2, 3}));
  EXPECT_EQ((sf::Grouped<2, 2>::plan(8).attention_slots), 4);
  EXPECT_EQ((sf::Grouped<1, 1>::plan(12).attention), V(12, 0));
  EXPECT_EQ((sf::Grouped<3, 1>::plan(6).ffn), (V{0, 0, 1, 1, 2, 2}));
}

TEST(Policies, ImpossibleLayoutsThrowConfigError) {
  EXPECT_THROW(sf::Sequence<4>::plan(6), sf::ConfigError);
  EXPECT_THROW(sf::Cycle<7>::plan(6), sf::ConfigError);
  EXPECT_THROW(sf::CycleRev<7>::plan(6), sf::ConfigError);
  EXPECT_THROW(sf::Repeat<4>::plan(6), sf::ConfigError);
  EXPECT_THROW((sf::Grouped<2, 3>::plan(8)), sf::ConfigError);  // 3 does not divide 8
  EXPECT_THROW((sf::Grouped<3, 2>::plan(8)), sf::ConfigError);  // 3 groups for 4 outer layers
  EXPECT_THROW(sf::Unshared::plan(0), sf::ConfigError);
  try {
    sf::Sequence<4>::plan(6);
    FAIL();
  } catch (const sf::ConfigError& e) {
    EXPECT_STREQ(e.what(), "sequence:4: n_layers (6) is not divisible by M (4)");
  }
}

TEST(Policies, LayerMapValidatesItsTable) {
  const sf::LayerMap map({0, 1, 1, 0}, {0, 0, 0, 0});
  const auto plan = map.plan(4);
  EXPECT_EQ(plan.attention_slots, 2);
  EXPECT_EQ(plan.ffn_slots, 1);
  EXPECT_THROW(map.plan(5), sf::ConfigError);
  EXPECT_THROW(sf::LayerMap({0, 2}, {0, 0}), sf::ConfigError);  // slot 1 unused
  EXPECT_THROW(sf::LayerMap({0, -1}, {0, 0}), sf::ConfigError);
  EXPECT_THROW(sf::LayerMap({0, 1}, {0}), sf::ConfigError);
  EXPECT_EQ(sf::LayerMap::from_plan(sf::CycleRev<3>::plan(6)).plan(6).ffn, (V{0, 1, 2, 2, 1, 0}));
}

template <typename Policy>
void expect_sharing_by_address(const sf::Stack<Policy>& stack, bool share_attention,
                               bool share_ffn) {
  for (Index a = 0; a < stack.n_layers(); ++a)
    for (Index b = 0; b < stack.n_layers(); ++b) {
      if (a == b) continue;
      EXPECT_EQ(&stack.attention(a) == &stack.attention(b), share_attention) << a << " " << b;
      EXPECT_EQ(&stack.ffn(a) == &stack.ffn(b), share_ffn) << a << " " << b;
    }
}

TEST(Policies, SharedSubLayersAreOneObject) {
  sf::BlockConfig c;
  c.d_model = 8;
  c.n_heads = 2;
  c.d_ff = 16;
  expect_sharing_by_address(sf::Stack<sf::Unshared>(c, 6), false, false);
  expect_sharing_by_address(sf::Stack<sf::SharedFfn>(c, 6), false, true);
  expect_sharing_by_address(sf::Stack<sf::SharedAttention>(c, 6), true, false);
  expect_sharing_by_address(sf::Stack<sf::SharedAll>(c, 6), true, true);
  const sf::Stack<sf::CycleRev<3>> rev(c, 6);
  EXPECT_EQ(&rev.ffn(0), &rev.ffn(5));
  EXPECT_EQ(&rev.attention(2), &rev.attention(3));
  EXPECT_NE(&rev.ffn(0), &rev.ffn(1));
  const sf::Stack<sf::LayerMap> mapped(c, 3, sf::LayerMap({0, 1, 0}, {0, 0, 0}));
  EXPECT_EQ(&mapped.attention(0), &mapped.attention(2));
  EXPECT_EQ(&mapped.ffn(0), &mapped.ffn(1));
  EXPECT_EQ(mapped.attention_slots().size(), 2u);
  EXPECT_THROW(mapped.attention(3), sf::ConfigError);
}

TEST(Policies, TraitRecognisesPolicies) {
  EXPECT_TRUE(sf::is_sharing_policy_v<sf::SharedAll>);
  EXPECT_TRUE((sf::is_sharing_policy_v<sf::Grouped<2, 3>>));
  EXPECT_TRUE(sf::is_sharing_policy_v<sf::LayerMap>);
  EXPECT_FALSE(sf::is_sharing_policy_v<int>);
  EXPECT_FALSE(sf::is_sharing_policy_v<sf::BlockConfig>);
}
