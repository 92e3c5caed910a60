// SPDX-License-Identifier: MIT
// bfloat16 products (ops::Bf16PairMatrix, gemm_into on it, Linear::use_bf16_products): the pair
// layout, the products against naive double loops on the rounded operands (so only the float
// sums' rounding is allowed), and a whole stack against the float stack. Built twice: for the
// baseline instruction set (the portable loop) and, as test_bf16_dot_native, for this machine
// (the AVX512-BF16 kernel where the CPU has it).
#include "support/golden.hpp"
#include "support/reference.hpp"

#include <shareformer/shareformer.hpp>

#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <iostream>
#include <limits>
#include <random>
#include <string>
#include <tuple>
#include <utility>
#include <vector>

namespace sf = shareformer;
namespace naive = shareformer::testing::naive;
using sf::Index;
using sf::RowMatrix;
using sf::testing::max_abs_diff;
using sf::testing::random_matrix;

namespace {

RowMatrix<float> rounded(const RowMatrix<float>& m) {
  return m.unaryExpr([](float x) { return float(Eigen::bfloat16(x)); });
}

}  // namespace

TEST(Bf16Dot, TheKernelIsBuiltExactlyWhereTheInstructionSetHasIt) {
#if defined(__AVX512F__) && defined(__x86_64__)
  // test_bf16_dot_native (-march=native): the kernel must be in if and only if this CPU has it.
  EXPECT_EQ(sf::ops::has_bf16_dot, __builtin_cpu_supports("avx512bf16") != 0);
#else
  EXPECT_FALSE(sf::ops::has_bf16_dot);  // the baseline build: the portable loop
#endif
}

TEST(Bf16Dot, LayoutPairsRowsWithinPanels) {
  // Written from the documented layout: panels of 48 columns while they fit, then 16, then the
  // rest padded to 16; within a panel, pair q holds rows 2q and 2q + 1 of each column side by side.
  for (Index rows : {Index(1), Index(4), Index(7)}) {
    for (Index cols : {Index(1), Index(16), Index(48), Index(50), Index(100), Index(130)}) {
      const RowMatrix<float> m = random_matrix<float>(rows, cols, 1);
      const sf::ops::Bf16PairMatrix packed(m);
      ASSERT_EQ(packed.pairs(), (rows + 1) / 2);
      const Index padded_cols = (cols + 15) / 16 * 16;
      ASSERT_EQ(packed.bytes(), 2u * static_cast<std::size_t>(packed.pairs() * 2 * padded_cols));
      const Eigen::bfloat16* data = packed.data();
      for (Index j = 0; j < cols;) {
        const Index w = cols - j >= 48 ? 48 : std::min<Index>(16, cols - j);
        const Index stride = (w + 15) / 16 * 16;
        for (Index q = 0; q < packed.pairs(); ++q)
          for (Index c = 0; c < stride; ++c)
            for (Index half = 0; half < 2; ++half) {
              const Index r = 2 * q + half;
              const float want = (r < rows && c < w) ? float(Eigen::bfloat16(m(r, j + c))) : 0.0f;
              ASSERT_EQ(float(*data++), want)
                  << rows << "x" << cols << " at (" << r << ", " << j + c << ")";
              if (r < rows && c < w) {
                ASSERT_EQ(float(packed(r, j + c)), want);
              }
            }
        j += w;
      }
    }
  }
}

TEST(Bf16Dot, EachPassPrefetchesTheBlockTheNextPassReads) {
  // As for PackedMatrix (test_packed): from the documented layout, the passes in the order the
  // kernel makes them, and what each one prefetches within a range of panels.
  const Index pass = sf::ops::detail::packed_gemm_kc / 2, cols = 48 * 2 + 16 + 5;
  struct Block {
    Index panel, pair;
    const Eigen::bfloat16* first;
    Index bytes;
  };
  for (Index rows : {Index(1), Index(3), 2 * pass, 2 * pass + 32, 4 * pass + 101}) {
    const sf::ops::Bf16PairMatrix b(random_matrix<float>(rows, cols, 7));
    const Index pairs = b.pairs();
    std::vector<Block> order;
    for (Index j : {Index(0), Index(48), Index(96), Index(112)}) {
      const Index padded_width = j < 96 ? 48 : 16;
      for (Index q0 = 0; q0 < pairs; q0 += pass)
        order.push_back({j, q0, b.data() + j * pairs * 2 + q0 * 2 * padded_width,
                         std::min(pass, pairs - q0) * 2 * padded_width * 2});
    }
    for (const auto& [begin, end] :
         std::vector<std::pair<Index, Index>>{{0, cols}, {0, 48}, {48, 112}, {96, cols}})
      for (std::size_t i = 0; i < order.size(); ++i) {
        if (order[i].panel < begin || order[i].panel >= end) continue;
        const sf::ops::detail::NextBlock next =
            sf::ops::detail::next_pair_block(b, order[i].panel, order[i].pair, pass, end);
        const std::string where = "rows " + std::to_string(rows) + ", columns [" +
                                  std::to_string(begin) + ", " + std::to_string(end) + "), block " +
                                  std::to_string(i);
        const bool following = i + 1 < order.size() && order[i + 1].panel < end;
        const Block& after = order[following ? i + 1 : i];
        sf::testing::expect_next_block(next, following, after.first, after.bytes, where);
      }
  }
}

// c = start + round(a) round(b), every start kind, row counts over and under a tile, depths over
// one pass (768), odd depths (a zero pair), partial panels, k = 0, 1-3 threads. The pair products
// are exact in float, so the only error allowed is the float sums'.
TEST(Bf16Dot, GemmMatchesNaiveOnTheRoundedOperands) {
  using Start = sf::ops::GemmStart<float>;
  const float nan = std::numeric_limits<float>::quiet_NaN();
  const std::vector<std::tuple<Index, Index, Index>> shapes = {
      {1, 7, 3},    {8, 64, 48}, {17, 301, 53}, {9, 1, 129},    {5, 768, 100},
      {40, 33, 97}, {3, 0, 20},  {12, 800, 64}, {16, 768, 2304}};
  for (const auto& [m, k, n] : shapes) {
    const RowMatrix<float> a = random_matrix<float>(m, k, 2);
    const RowMatrix<float> b = random_matrix<float>(k, n, 3);
    const RowMatrix<float> residual = random_matrix<float>(m, n, 4);
    const sf::RowVector<float> bias = random_matrix<float>(1, n, 5);
    const sf::ops::Bf16PairMatrix packed(b);
    const naive::M product =
        naive::linear(rounded(a).cast<double>(), rounded(b).cast<double>(), naive::M::Zero(1, n));
    for (int kind = 0; kind < 4; ++kind) {  // zero, bias, residual, residual + bias
      naive::M expected = product;
      Start start;
      if (kind % 2 == 1) {
        expected.rowwise() += bias.cast<double>();
        start.bias = bias.data();
      }
      if (kind >= 2) {
        expected += residual.cast<double>();
        start.c0 = residual.data();
        start.ld = n;
      }
      for (int threads : {1, 2, 3}) {
        sf::ops::GemmScratch<float> scratch;
        RowMatrix<float> store = RowMatrix<float>::Constant(m, n + 3, nan);
        sf::ops::gemm_into<float>(a, packed, start, store.leftCols(n), threads, scratch);
        const std::string where = std::to_string(m) + "x" + std::to_string(k) + "x" +
                                  std::to_string(n) + " kind " + std::to_string(kind) +
                                  " threads " + std::to_string(threads);
        EXPECT_LT(max_abs_diff(store.leftCols(n), expected), 2e-5 * std::sqrt(double(k) + 1))
            << where;
        EXPECT_TRUE(store.rightCols(3).array().isNaN().all()) << "wrote outside c: " << where;
      }
    }
  }
}

TEST(Bf16Dot, EpilogueSeesEveryColumnOnceWhenItIsFinal) {
  const Index m = 11, k = 70, n = 48 * 2 + 16 + 5;
  const RowMatrix<float> a = random_matrix<float>(m, k, 6), b = random_matrix<float>(k, n, 7);
  const sf::ops::Bf16PairMatrix packed(b);
  const naive::M product =
      naive::linear(rounded(a).cast<double>(), rounded(b).cast<double>(), naive::M::Zero(1, n));
  for (int threads : {1, 2}) {
    RowMatrix<float> c(m, n);
    std::vector<int> seen(static_cast<std::size_t>(n), 0);
    bool complete = true;
    sf::ops::GemmScratch<float> scratch;
    sf::ops::gemm_into<float>(a, packed, sf::ops::GemmStart<float>{}, c, threads, scratch,
                              [&](Index row, Index rows, Index col, Index cols) {
                                for (Index i = row; i < row + rows; ++i)
                                  for (Index j = col; j < col + cols; ++j)
                                    if (std::abs(double(c(i, j)) - product(i, j)) > 1e-4)
                                      complete = false;
                                for (Index j = col; j < col + cols; ++j)
                                  ++seen[static_cast<std::size_t>(j)];
                              });
    EXPECT_TRUE(complete) << "an epilogue ran before its block was final";
    for (Index j = 0; j < n; ++j) EXPECT_EQ(seen[static_cast<std::size_t>(j)], 1) << "column " << j;
  }
}

TEST(Bf16Dot, LinearRoundsItsWeightAndInputAndDropsTheCopyOnChange) {
  sf::Linear<float> linear(37, 53);
  std::mt19937_64 rng(3);
  linear.randomize(rng, 0.5, 0.5);
  const RowMatrix<float> w0 = linear.weight();
  linear.pack_weights();
  linear.use_bf16_products();
  EXPECT_TRUE(linear.uses_bf16_products());
  EXPECT_FALSE(linear.has_packed_weights());
  EXPECT_EQ(linear.packed_bytes(), 2u * 19u * 2u * 64u);  // 19 pairs, 53 columns padded to 64
  const sf::Linear<float>& view = linear;
  EXPECT_EQ(view.weight(), rounded(w0));

  const RowMatrix<float> x = random_matrix<float>(6, 37, 4);
  RowMatrix<float> y(6, 53);
  linear.forward(x, y, 2);
  EXPECT_LT(max_abs_diff(y, naive::linear(rounded(x).cast<double>(), rounded(w0).cast<double>(),
                                          linear.bias().cast<double>())),
            1e-5);

  linear.weight()(2, 50) = 4.0f;  // mutable access: the copy would be stale
  EXPECT_FALSE(linear.uses_bf16_products());
  linear.forward(x, y, 1);  // float products again, on the (rounded) weight as it now is
  EXPECT_LT(max_abs_diff(y, naive::linear(x.cast<double>(), linear.weight().cast<double>(),
                                          linear.bias().cast<double>())),
            1e-5);
  linear.use_bf16_products();
  linear.pack_weights();  // the last call decides the mode
  EXPECT_FALSE(linear.uses_bf16_products());
  EXPECT_TRUE(linear.has_packed_weights());
}

// The precision a user gets: a 3-layer stack in bfloat16 products against the same stack in float.
// bfloat16 keeps 8 significant bits (relative spacing 2^-7 = 0.0078, rounding error half that);
// the bound 0.05 on LayerNorm-scaled outputs (values of order 1) was set before running: a few
// roundings' worth per layer over three layers, and far below a wrong product's effect (order 1).
TEST(Bf16Dot, StackStaysCloseToTheFloatStack) {
  sf::BlockConfig config;
  config.d_model = 64;
  config.n_heads = 4;
  config.d_ff = 128;
  sf::Stack<sf::SharedAll> fast(config, 3);
  fast.randomize(21, 0.1, 0.1, 0.1);
  const sf::Stack<sf::SharedAll> exact = fast;
  fast.use_bf16_products();
  const sf::Batch batch = sf::Batch::padded(16, {16, 9});
  const RowMatrix<float> x = random_matrix<float>(batch.tokens(), 64, 22);
  for (int threads : {1, 2}) {
    const RowMatrix<float> got = fast.forward(x, batch, threads);
    const double diff = max_abs_diff(got, exact.forward(x, batch, threads));
    EXPECT_LT(diff, 0.05) << "threads " << threads;
    EXPECT_GT(diff, 0.0) << "bfloat16 products should differ from float ones somewhere";
  }
}

// Real checkpoint layouts (the Hub-layout goldens, PyTorch's fp32 outputs): the error bfloat16
// products add, under the same a-priori bound of 0.05 on the LayerNorm-scaled hidden states.
TEST(Bf16Dot, HubGoldensStayCloseToPyTorch) {
  for (const char* name : {"bert_plain", "albert_classic"}) {
    const sf::testing::Golden g = sf::testing::read_golden(name);
    auto model = sf::io::load_hf_model<float>(sf::testing::golden(name));
    model.use_bf16_products();
    const auto out = model.forward(g.input_ids, g.token_type_ids, g.attention_mask, 2);
    const double hidden = sf::testing::unmasked_error(out.last_hidden_state, g);
    const double pooler = max_abs_diff(out.pooler_output, g.pooler_output);
    std::cout << "[ bf16 dot ] " << name << ": last_hidden_state " << hidden << ", pooler_output "
              << pooler << "\n";
    EXPECT_LT(hidden, 0.05) << name;
    EXPECT_LT(pooler, 0.05) << name;
  }
}
