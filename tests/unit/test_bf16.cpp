// SPDX-License-Identifier: MIT
// bfloat16 weight storage: the GEMM that widens bfloat16 weights as it reads them, Linear's
// rounding, and whole stacks and encoders with use_bf16_weights().
#include "support/reference.hpp"

#include <shareformer/shareformer.hpp>

#include <gtest/gtest.h>

#include <cmath>
#include <cstdint>
#include <cstring>
#include <limits>
#include <set>
#include <vector>

namespace sf = shareformer;
namespace naive = shareformer::testing::naive;
using sf::Index;
using sf::RowMatrix;
using sf::testing::max_abs_diff;
using sf::testing::random_matrix;

namespace {

// Round to the nearest bfloat16, ties to even, written on the bits (independent of Eigen's).
float round_bf16(float x) {
  std::uint32_t bits = 0;
  std::memcpy(&bits, &x, sizeof bits);
  bits = (bits + 0x7fffu + ((bits >> 16) & 1u)) & 0xffff0000u;
  float out = 0;
  std::memcpy(&out, &bits, sizeof out);
  return out;
}

RowMatrix<float> rounded(const RowMatrix<float>& m) { return m.unaryExpr(&round_bf16); }

RowMatrix<Eigen::bfloat16> to_bf16(const RowMatrix<float>& m) { return m.cast<Eigen::bfloat16>(); }

}  // namespace

TEST(Bf16, RoundingIsNearestEven) {
  // 1 + 2^-8 lies halfway between 1 and 1 + 2^-7: ties go to the even mantissa, 1.
  EXPECT_EQ(round_bf16(1.0f + std::ldexp(1.0f, -8)), 1.0f);
  EXPECT_EQ(round_bf16(1.0f + 3 * std::ldexp(1.0f, -8)), 1.0f + 2 * std::ldexp(1.0f, -7));
  // Eigen's conversion, which Linear uses, agrees on random values.
  const RowMatrix<float> m = random_matrix<float>(31, 17, 9);
  EXPECT_EQ(rounded(m), to_bf16(m).cast<float>());
}

TEST(Bf16, GemmEqualsFloatGemmOnTheSameValues) {
  // Odd column counts reach the one-packet and scalar tails; k over 256 takes several passes.
  for (const auto& [m, k, n] : {std::tuple<Index, Index, Index>{1, 7, 3},
                                {8, 64, 48},
                                {17, 300, 53},
                                {5, 768, 2304},
                                {64, 33, 129}}) {
    const RowMatrix<float> a = random_matrix<float>(m, k, 1);
    const RowMatrix<float> b = rounded(random_matrix<float>(k, n, 2));
    const RowMatrix<float> c0 = random_matrix<float>(m, n, 3);
    const naive::M expected =
        naive::linear(a.cast<double>(), b.cast<double>(), naive::M::Zero(1, n)) + c0.cast<double>();
    for (int threads : {1, 2, 3}) {
      sf::ops::GemmScratch<float> scratch;
      RowMatrix<float> from_bf16 = c0;
      sf::ops::gemm_accumulate<float>(a, to_bf16(b), from_bf16, threads, scratch);
      EXPECT_LT(max_abs_diff(from_bf16, expected), 2e-5 * std::sqrt(double(k)))
          << m << "x" << k << "x" << n << " threads " << threads;
      // The same kernel on the widened float values: the same operations, the same bits.
      RowMatrix<float> from_float = c0;
      sf::ops::GemmScratch<float> unused;
      sf::ops::gemm_into<float>(a, b, sf::ops::GemmStart<float>{from_float.data(), n, nullptr},
                                from_float, threads, unused);
      EXPECT_EQ(from_bf16, from_float) << m << "x" << k << "x" << n << " threads " << threads;
    }
  }
}

TEST(Bf16, GemmReadsStridedViews) {
  const RowMatrix<float> big_a = random_matrix<float>(6, 40, 4);
  const RowMatrix<float> b = rounded(random_matrix<float>(37, 50, 5));
  const auto a = big_a.middleCols(2, 37);
  const RowMatrix<float> c0 = random_matrix<float>(6, 55, 6);
  RowMatrix<float> c = c0;
  sf::ops::GemmScratch<float> scratch;
  sf::ops::gemm_accumulate<float>(a, to_bf16(b), c.leftCols(50), 2, scratch);
  const naive::M expected =
      naive::linear(a.cast<double>(), b.cast<double>(), naive::M::Zero(1, 50)) +
      c0.leftCols(50).cast<double>();
  EXPECT_LT(max_abs_diff(c.leftCols(50), expected), 2e-5 * std::sqrt(37.0));
  EXPECT_EQ(c.rightCols(5), c0.rightCols(5)) << "wrote outside the view";
}

TEST(Bf16, LinearRoundsItsWeightAndDropsTheCopyOnMutableAccess) {
  sf::Linear<float> linear(19, 23);
  std::mt19937_64 rng(7);
  linear.randomize(rng, 0.5, 0.5);
  const RowMatrix<float> original = linear.weight();
  const sf::RowVector<float> bias = linear.bias();
  EXPECT_FALSE(linear.uses_bf16_weights());
  linear.use_bf16_weights();
  EXPECT_TRUE(linear.uses_bf16_weights());
  const sf::Linear<float>& view = linear;
  EXPECT_EQ(view.weight(), rounded(original));
  EXPECT_EQ(view.bias(), bias) << "biases stay float";
  // Rounding again changes nothing.
  linear.use_bf16_weights();
  EXPECT_EQ(view.weight(), rounded(original));

  const RowMatrix<float> x = random_matrix<float>(4, 19, 8);
  RowMatrix<float> y(4, 23);
  linear.forward(x, y);
  const naive::M expected =
      naive::linear(x.cast<double>(), rounded(original).cast<double>(), bias.cast<double>());
  EXPECT_LT(max_abs_diff(y, expected), 1e-5);

  linear.weight()(0, 0) = 3.0f;  // mutable access: the bfloat16 copy would be stale
  EXPECT_FALSE(linear.uses_bf16_weights());
  linear.forward(x, y);
  naive::M w = rounded(original).cast<double>();
  w(0, 0) = 3.0;
  EXPECT_LT(max_abs_diff(y, naive::linear(x.cast<double>(), w, bias.cast<double>())), 1e-5);
}

// A stack with bfloat16 weights computes what the same stack computes with its float weights
// rounded to bfloat16: bit for bit below bf16_gemm_max_rows (the same kernel reads the same
// values) and on the float path above it.
TEST(Bf16, StackEqualsStackWithRoundedFloatWeights) {
  sf::BlockConfig config;
  config.d_model = 48;
  config.n_heads = 4;
  config.d_ff = 96;
  for (Index tokens : {Index(5), Index(16), sf::ops::bf16_gemm_max_rows + 7}) {
    sf::Stack<sf::SharedFfn> compact(config, 3);
    compact.randomize(11, 0.2, 0.2, 0.1);
    sf::Stack<sf::SharedFfn> plain = compact;
    compact.use_bf16_weights();
    int linears = 0;
    plain.for_each_linear([&](sf::Linear<float>& l) {
      l.weight() = rounded(l.weight());
      EXPECT_FALSE(l.uses_bf16_weights());
      ++linears;
    });
    EXPECT_EQ(linears, 3 * 2 + 1 * 2) << "3 attention slots, 1 shared FFN, 2 Linears each";
    compact.for_each_linear([](sf::Linear<float>& l) { EXPECT_TRUE(l.uses_bf16_weights()); });
    // for_each_linear's mutable access dropped the copies: set them again.
    compact.use_bf16_weights();

    const sf::Batch batch = sf::Batch::uniform(1, tokens);
    const RowMatrix<float> x = random_matrix<float>(tokens, 48, 12);
    for (int threads : {1, 2}) {
      const RowMatrix<float> got = compact.forward(x, batch, threads);
      const RowMatrix<float> want = plain.forward(x, batch, threads);
      EXPECT_EQ(got, want) << tokens << " tokens, threads " << threads;
      // And both against the naive reference on the rounded weights.
      EXPECT_LT(max_abs_diff(got, naive::stack(plain, x.cast<double>(), batch)), 1e-4);
    }
  }
}

TEST(Bf16, EncoderRoundsEveryLinearOnce) {
  sf::AlbertModel<float> model(sf::testing::tiny_albert_config());
  model.randomize(3);
  std::vector<const sf::Linear<float>*> seen;
  model.use_bf16_weights();
  model.for_each_linear([&](sf::Linear<float>& l) { seen.push_back(&l); });
  // projection, one shared block's 4 Linears, pooler: each distinct Linear once.
  EXPECT_EQ(seen.size(), 6u);
  EXPECT_EQ(std::set<const sf::Linear<float>*>(seen.begin(), seen.end()).size(), seen.size());
}
