// SPDX-License-Identifier: MIT
// Each op against a naive loop: GEMM (strided views, threads), LayerNorm, activations, softmax,
// attention with padding, causal and non-prefix masks.
#include "support/reference.hpp"

#include <shareformer/shareformer.hpp>

#include <gtest/gtest.h>

#include <limits>

namespace sf = shareformer;
namespace naive = shareformer::testing::naive;
using sf::Index;
using sf::RowMatrix;
using sf::testing::max_abs_diff;
using sf::testing::random_matrix;

template <typename T>
class Ops : public sf::testing::ScalarTest<T> {};
TYPED_TEST_SUITE(Ops, sf::testing::Scalars);

TYPED_TEST(Ops, GemmAccumulatesOnStridedViewsWithAnyThreadCount) {
  using T = TypeParam;
  for (const auto& [m, k, n] :
       {std::tuple<Index, Index, Index>{1, 7, 3}, {37, 19, 53}, {130, 64, 40}, {5, 300, 129}}) {
    const RowMatrix<T> big_a = random_matrix<T>(m, k + 3, 1);
    const RowMatrix<T> b = random_matrix<T>(k, n, 2);
    const RowMatrix<T> c0 = random_matrix<T>(m, n + 5, 3);
    const auto a = big_a.middleCols(2, k);
    const naive::M expected =
        naive::linear(a.template cast<double>(), b.template cast<double>(), naive::M::Zero(1, n)) +
        c0.leftCols(n).template cast<double>();
    for (int threads : {1, 2, 3}) {
      RowMatrix<T> c = c0;
      sf::ops::gemm_accumulate<T>(a, b, c.leftCols(n), threads);
      EXPECT_LT(max_abs_diff(c.leftCols(n), expected), this->tol() * std::sqrt(double(k)))
          << m << "x" << k << "x" << n << " threads " << threads;
      EXPECT_EQ(c.rightCols(5), c0.rightCols(5)) << "wrote outside the view";
    }
  }
}

TYPED_TEST(Ops, GemmNtEqualsProductWithTranspose) {
  using T = TypeParam;
  const RowMatrix<T> a = random_matrix<T>(9, 6, 4), b = random_matrix<T>(11, 6, 5);
  RowMatrix<T> c = RowMatrix<T>::Zero(9, 11);
  sf::ops::GemmBlocking<T> blocking;
  sf::ops::gemm_nt_accumulate<T>(a, b, c, blocking);
  const naive::M bt = b.template cast<double>().transpose();
  EXPECT_LT(max_abs_diff(c, naive::linear(a.template cast<double>(), bt, naive::M::Zero(1, 11))),
            this->tol());
}

TYPED_TEST(Ops, LayerNormMatchesNaive) {
  using T = TypeParam;
  RowMatrix<T> x = random_matrix<T>(7, 33, 6);
  x.array() += T(3);  // a large mean tests the centring
  const sf::RowVector<T> g = random_matrix<T>(1, 33, 7), b = random_matrix<T>(1, 33, 8);
  const naive::M expected = naive::layer_norm(x.template cast<double>(), g.template cast<double>(),
                                              b.template cast<double>(), 1e-5);
  // Out of place: x is only read, and y gets what in place gives, bit for bit.
  const RowMatrix<T> x0 = x;
  RowMatrix<T> y = RowMatrix<T>::Constant(7, 33, std::numeric_limits<T>::quiet_NaN());
  sf::ops::layer_norm<T>(x, y, g, b, T(1e-5));
  EXPECT_EQ(x, x0);
  sf::ops::layer_norm<T>(x, g, b, T(1e-5));
  EXPECT_LT(max_abs_diff(x, expected), this->tol());
  EXPECT_EQ(y, x);
}

TYPED_TEST(Ops, ActivationsMatchTheirDefinitions) {
  using T = TypeParam;
  for (auto act : {sf::Activation::GeluErf, sf::Activation::GeluTanh, sf::Activation::Relu}) {
    RowMatrix<T> x = random_matrix<T>(5, 40, 9) * T(3);
    const RowMatrix<T> x0 = x;
    sf::ops::activate<T>(act, x);
    for (Index i = 0; i < x.rows(); ++i)
      for (Index j = 0; j < x.cols(); ++j)
        EXPECT_NEAR(double(x(i, j)), naive::activation(act, double(x0(i, j))), this->tol())
            << sf::to_string(act) << " at " << x0(i, j);
  }
  EXPECT_NEAR(sf::ops::gelu_erf<double>(1.0), 0.8413447460685429, 1e-15);
  EXPECT_NEAR(sf::ops::gelu_tanh<double>(1.0), 0.8411919906082768, 1e-15);
}

TYPED_TEST(Ops, SoftmaxIsStableAndMasksTheTail) {
  using T = TypeParam;
  RowMatrix<T> row(1, 4);
  row << T(1000), T(1001), T(5), T(-3);
  sf::ops::softmax_prefix(row.row(0), 2);
  EXPECT_NEAR(double(row(0, 0)), 1.0 / (1.0 + std::exp(1.0)), this->tol());
  EXPECT_NEAR(double(row(0, 1)), 1.0 / (1.0 + std::exp(-1.0)), this->tol());
  EXPECT_EQ(row(0, 2), T(0));
  EXPECT_EQ(row(0, 3), T(0));
  sf::ops::softmax_prefix(row.row(0), 0);
  EXPECT_TRUE(row.isZero(0));
}

TYPED_TEST(Ops, SoftmaxMatchesNaiveOverEveryPacketRemainder) {
  using T = TypeParam;
  // Lengths around one, two and several packets of every SIMD width (2 doubles to 16 floats),
  // so that the vectorised maximum, exp and sum meet whole packets, packets left over and single
  // elements; the maximum placed at either end and in the middle.
  for (const Index n : std::vector<Index>{1, 2, 3, 15, 16, 17, 31, 32, 33, 47, 48, 50, 100, 512})
    for (Index at : {Index(0), n / 2, n - 1}) {
      RowMatrix<T> row = random_matrix<T>(1, n + 3, 11) * T(4);
      row(0, at) = T(9);
      const RowMatrix<T> x = row;
      const double scale = 0.125;
      sf::ops::softmax_prefix(row.row(0), n, T(scale));
      double max = -1e300, sum = 0;
      for (Index j = 0; j < n; ++j) max = std::max(max, double(x(0, j)));
      for (Index j = 0; j < n; ++j) sum += std::exp((double(x(0, j)) - max) * scale);
      for (Index j = 0; j < n; ++j)
        EXPECT_NEAR(double(row(0, j)), std::exp((double(x(0, j)) - max) * scale) / sum, this->tol())
            << "entry " << j << " of " << n << ", maximum at " << at;
      for (Index j = n; j < n + 3; ++j) EXPECT_EQ(row(0, j), T(0)) << "tail entry " << j;
    }
}

TYPED_TEST(Ops, AttentionMatchesNaiveForEveryMaskKind) {
  using T = TypeParam;
  const Index d = 24, heads = 4, s = 7;
  Eigen::Matrix<int, 3, 7> holes;
  holes << 1, 1, 0, 1, 0, 1, 1,  //
      0, 0, 0, 0, 0, 0, 0,       // a sequence with no valid key: zero context
      0, 1, 1, 1, 1, 1, 0;
  const std::vector<sf::Batch> batches = {sf::Batch::uniform(2, s), sf::Batch::padded(s, {7, 3, 1}),
                                          sf::Batch::from_mask(holes)};
  for (const auto& batch : batches)
    for (bool causal : {false, true}) {
      const RowMatrix<T> qkv = random_matrix<T>(batch.tokens(), 3 * d, 10);
      RowMatrix<T> ctx(batch.tokens(), d);
      std::vector<RowMatrix<T>> scores;
      const naive::M q = qkv.leftCols(d).template cast<double>(),
                     k = qkv.middleCols(d, d).template cast<double>(),
                     v = qkv.rightCols(d).template cast<double>();
      const naive::M expected = naive::attention(q, k, v, batch, heads, causal);
      for (int threads : {1, 2}) {
        ctx.setConstant(std::numeric_limits<T>::quiet_NaN());
        sf::ops::attention<T>(qkv, batch, heads, causal, ctx, scores, threads);
        EXPECT_LT(max_abs_diff(ctx, expected), this->tol()) << "causal " << causal;
        EXPECT_TRUE(ctx.allFinite());
      }
      // In blocks of rows that cut through sequences (one thread's share each, RowShare). Not bit
      // for bit the same as above: a score row's place in the buffer, hence its alignment and the
      // order of its vectorised exp and sum, differs.
      ctx.setConstant(std::numeric_limits<T>::quiet_NaN());
      RowMatrix<T> buffer;
      const Index cuts[] = {0, 5, 6, 12, batch.tokens()};
      for (int i = 0; i + 1 < 5; ++i)
        sf::ops::attention_rows<T>(qkv, batch, heads, causal, ctx, buffer, cuts[i], cuts[i + 1]);
      EXPECT_LT(max_abs_diff(ctx, expected), this->tol()) << "rows, causal " << causal;
    }
}

TYPED_TEST(Ops, AttentionMatchesNaiveOnLongSequences) {
  // 800 keys: the P V product runs over k in two passes of the packed kernel (packed_gemm_kc =
  // 768 keys, then the rest); d_head 64 = whole packets (a 3-packet panel and a 1-packet one), and
  // one key count (777) that is not a whole number of panels: Q K^T's last 9 columns are scalar.
  // The queries run in blocks (attention_block_rows: 40 rows in float, 16 in double), which the
  // row shares below cut through at other places than the blocks' edges; the hole mask makes the
  // scores of masked keys -inf inside blocks.
  using T = TypeParam;
  const Index d = 128, heads = 2, s = 800;
  static_assert(sf::ops::detail::packed_gemm_kc < 800, "two passes over the keys");
  ASSERT_LT(sf::ops::detail::attention_block_rows(s, sizeof(T)), 100) << "several query blocks";
  Eigen::Matrix<int, Eigen::Dynamic, Eigen::Dynamic> holes = Eigen::MatrixXi::Ones(2, s);
  holes.block(0, 90, 1, 60).setZero();
  holes.block(1, 0, 1, 3).setZero();
  holes.block(1, 700, 1, 100).setZero();
  for (const sf::Batch& batch : {sf::Batch::padded(s, {800, 777}), sf::Batch::from_mask(holes)}) {
    const RowMatrix<T> qkv = random_matrix<T>(batch.tokens(), 3 * d, 12);
    const naive::M q = qkv.leftCols(d).template cast<double>(),
                   k = qkv.middleCols(d, d).template cast<double>(),
                   v = qkv.rightCols(d).template cast<double>();
    std::vector<RowMatrix<T>> scratch;
    for (bool causal : {false, true}) {
      const naive::M expected = naive::attention(q, k, v, batch, heads, causal);
      for (int threads : {1, 2}) {
        RowMatrix<T> ctx =
            RowMatrix<T>::Constant(batch.tokens(), d, std::numeric_limits<T>::quiet_NaN());
        sf::ops::attention<T>(qkv, batch, heads, causal, ctx, scratch, threads);
        EXPECT_LT(max_abs_diff(ctx, expected), this->tol()) << "causal " << causal;
        // Each thread's scratch holds one block of scores and K^T and V, not every query's scores.
        EXPECT_EQ(scratch.front().rows(), sf::ops::detail::attention_block_rows(s, sizeof(T)) + d);
      }
      RowMatrix<T> ctx =
          RowMatrix<T>::Constant(batch.tokens(), d, std::numeric_limits<T>::quiet_NaN());
      RowMatrix<T> buffer;
      const Index cuts[] = {0, 333, s + 101, batch.tokens()};
      for (int i = 0; i + 1 < 4; ++i)
        sf::ops::attention_rows<T>(qkv, batch, heads, causal, ctx, buffer, cuts[i], cuts[i + 1]);
      EXPECT_LT(max_abs_diff(ctx, expected), this->tol()) << "rows, causal " << causal;
    }
  }
}

TYPED_TEST(Ops, ElementwiseOpsSplitOverThreadsGiveIdenticalRows) {
  using T = TypeParam;
  // 200 x 768 is enough work for the row split to use 2 threads.
  const RowMatrix<T> x0 = random_matrix<T>(200, 768, 11);
  const sf::RowVector<T> g = random_matrix<T>(1, 768, 12), b = random_matrix<T>(1, 768, 13);
  RowMatrix<T> one = x0, two = x0;
  sf::ops::layer_norm<T>(one, g, b, T(1e-5), 1);
  sf::ops::layer_norm<T>(two, g, b, T(1e-5), 2);
  EXPECT_EQ(one, two);
  for (auto act : {sf::Activation::GeluErf, sf::Activation::GeluTanh, sf::Activation::Relu}) {
    one = x0;
    two = x0;
    sf::ops::activate<T>(act, one, 1);
    sf::ops::activate<T>(act, two, 2);
    EXPECT_EQ(one, two);
    EXPECT_NEAR(double(one(199, 767)), naive::activation(act, double(x0(199, 767))), this->tol());
  }
}

TYPED_TEST(Ops, FusedActivationEqualsLinearThenActivation) {
  using T = TypeParam;
  // 10 rows take the small-product kernel, 150 rows Eigen's packed kernel; 101 columns leave tails.
  for (Index rows : {10, 150})
    for (int threads : {1, 2}) {
      // Depth 300 takes two passes over k before the epilogue may run.
      const RowMatrix<T> x = random_matrix<T>(rows, 300, 14), w = random_matrix<T>(300, 101, 15);
      const sf::RowVector<T> b = random_matrix<T>(1, 101, 16);
      sf::ops::GemmScratch<T> scratch;
      RowMatrix<T> fused(rows, 101), separate(rows, 101);
      sf::ops::linear_activate<T>(x, w, b, sf::Activation::GeluErf, fused, threads, scratch);
      sf::ops::linear<T>(x, w, b, separate, threads, scratch);
      const naive::M pre = naive::linear(x.template cast<double>(), w.template cast<double>(),
                                         b.template cast<double>());
      sf::ops::activate<T>(sf::Activation::GeluErf, separate, 1);
      // Vectorised and scalar erf may differ in the last bit where block edges fall differently.
      EXPECT_LT(max_abs_diff(fused, separate), this->tol())
          << rows << " rows, " << threads << " threads";
      for (Index i = 0; i < rows; ++i)
        for (Index j = 0; j < 101; ++j)
          ASSERT_NEAR(double(fused(i, j)), naive::activation(sf::Activation::GeluErf, pre(i, j)),
                      this->tol() * std::sqrt(300.0));  // as the GEMM test: error grows with depth
    }
}
