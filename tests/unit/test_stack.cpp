// SPDX-License-Identifier: MIT
// Stack<Policy, T> against a naive re-implementation, and the properties a forward must have.
#include "support/reference.hpp"

#include <shareformer/shareformer.hpp>

#include <gtest/gtest.h>

#include <thread>

namespace sf = shareformer;
namespace naive = shareformer::testing::naive;
using sf::Index;
using sf::RowMatrix;
using sf::testing::max_abs_diff;
using sf::testing::random_matrix;

namespace {

template <typename P, typename S>
struct Case {
  using Policy = P;
  using T = S;
};

sf::BlockConfig small_config(sf::NormPlacement norm = sf::NormPlacement::Post,
                             sf::Activation act = sf::Activation::GeluErf) {
  sf::BlockConfig c;
  c.d_model = 24;
  c.n_heads = 4;  // d_head 6
  c.d_ff = 40;
  c.norm = norm;
  c.activation = act;
  return c;
}

template <typename T>
double tol() {
  return std::is_same_v<T, float> ? 2e-5 : 1e-11;
}

}  // namespace

template <typename C>
class StackTest : public ::testing::Test {
 protected:
  using Policy = typename C::Policy;
  using Scalar = typename C::T;
  static sf::Stack<Policy, Scalar> make(const sf::BlockConfig& c, std::uint64_t seed = 42) {
    sf::Stack<Policy, Scalar> stack(c, 6);
    stack.randomize(seed, 0.2, 0.1, 0.1);
    return stack;
  }
};

using Cases = ::testing::Types<Case<sf::Unshared, float>, Case<sf::Unshared, double>,
                               Case<sf::SharedFfn, float>, Case<sf::SharedFfn, double>,
                               Case<sf::SharedAttention, float>, Case<sf::SharedAttention, double>,
                               Case<sf::SharedAll, float>, Case<sf::SharedAll, double>,
                               Case<sf::CycleRev<3>, double>, Case<sf::Sequence<2>, float>,
                               Case<sf::Repeat<3>, double>, Case<sf::Grouped<1, 2>, float>>;
TYPED_TEST_SUITE(StackTest, Cases);

TYPED_TEST(StackTest, MatchesNaiveLoopsPostAndPreLnWithPadding) {
  using T = typename TestFixture::Scalar;
  for (auto norm : {sf::NormPlacement::Post, sf::NormPlacement::Pre})
    for (auto act : {sf::Activation::GeluErf, sf::Activation::GeluTanh, sf::Activation::Relu}) {
      const auto stack = TestFixture::make(small_config(norm, act));
      const auto batch = sf::Batch::padded(5, {5, 2, 1});
      const RowMatrix<T> x = random_matrix<T>(batch.tokens(), 24, 1);
      const RowMatrix<T> y = stack.forward(x, batch, 1);
      const naive::M expected = naive::stack(stack, x.template cast<double>(), batch);
      EXPECT_LT(max_abs_diff(y, expected), tol<T>())
          << sf::to_string(norm) << " " << sf::to_string(act);
    }
}

TYPED_TEST(StackTest, PermutingSequencesPermutesOutputs) {
  using T = typename TestFixture::Scalar;
  const auto stack = TestFixture::make(small_config());
  const Index s = 4;
  const RowMatrix<T> x = random_matrix<T>(3 * s, 24, 2);
  RowMatrix<T> permuted(3 * s, 24);
  const int order[3] = {2, 0, 1};
  for (int i = 0; i < 3; ++i) permuted.middleRows(i * s, s) = x.middleRows(order[i] * s, s);
  const RowMatrix<T> y = stack.forward(x, sf::Batch::padded(s, {4, 3, 2}), 2);
  const RowMatrix<T> yp = stack.forward(permuted, sf::Batch::padded(s, {2, 4, 3}), 2);
  for (int i = 0; i < 3; ++i)
    EXPECT_LT(max_abs_diff(yp.middleRows(i * s, s), y.middleRows(order[i] * s, s)), tol<T>());
}

TYPED_TEST(StackTest, PaddingDoesNotChangeValidPositions) {
  using T = typename TestFixture::Scalar;
  const auto stack = TestFixture::make(small_config());
  const RowMatrix<T> x = random_matrix<T>(3, 24, 3);
  const RowMatrix<T> alone = stack.forward(x, sf::Batch::uniform(1, 3), 1);
  // The same 3 tokens padded to 7 with garbage, next to another sequence.
  RowMatrix<T> padded = random_matrix<T>(14, 24, 4) * T(50);
  padded.topRows(3) = x;
  const RowMatrix<T> y = stack.forward(padded, sf::Batch::padded(7, {3, 7}), 1);
  EXPECT_LT(max_abs_diff(y.topRows(3), alone), tol<T>());
}

TYPED_TEST(StackTest, ThreadCountChangesNothingBeyondRounding) {
  using T = typename TestFixture::Scalar;
  const auto stack = TestFixture::make(small_config());
  const auto batch = sf::Batch::padded(9, {9, 4, 7, 1});
  const RowMatrix<T> x = random_matrix<T>(batch.tokens(), 24, 5);
  const RowMatrix<T> one = stack.forward(x, batch, 1);
  for (int threads : {2, 3})
    EXPECT_LT(max_abs_diff(stack.forward(x, batch, threads), one), tol<T>());
}

// The threading plans of Stack::forward (detail::threading_plan), each on shapes that pick it: the
// result must be what one thread computes, for padding, hole masks, causal attention and pre-LN
// (with its final norm) alike.
TYPED_TEST(StackTest, EveryThreadingPlanMatchesOneThread) {
  using T = typename TestFixture::Scalar;
  using Plan = sf::detail::ThreadPlan;
  const Index g = sf::detail::group_min_tokens, r = sf::detail::share_min_rows;
  Eigen::Matrix<int, Eigen::Dynamic, Eigen::Dynamic> holes = Eigen::MatrixXi::Ones(3, r + 3);
  holes.block(0, 2, 1, 5).setZero();
  holes.row(1).setZero();  // a sequence with no valid key
  holes.block(2, 0, 1, 4).setZero();
  struct Shape {
    sf::Batch batch;
    int threads;
    Plan plan;
  };
  const std::vector<Shape> shapes = {
      {sf::Batch::padded(g, {g, g / 2, 3, g - 1}), 2, Plan::Groups},   // 2 sequences per thread
      {sf::Batch::padded(g + 1, {g + 1, 5, 70}), 3, Plan::Groups},     // 1 sequence per thread
      {sf::Batch::padded(r + 5, {r + 5, r / 2, 1}), 2, Plan::Shares},  // rows cut a sequence
      {sf::Batch::uniform(1, 3 * r + 7), 3, Plan::Shares},
      {sf::Batch::from_mask(holes), 2, Plan::Shares},
      {sf::Batch::padded(r / 2, {r / 2, 9}), 2, Plan::Steps},
  };
  for (auto norm : {sf::NormPlacement::Post, sf::NormPlacement::Pre})
    for (bool causal : {false, true}) {
      sf::BlockConfig c = small_config(norm);
      c.causal = causal;
      const auto stack = TestFixture::make(c);
      for (const Shape& shape : shapes) {
        const sf::Batch& batch = shape.batch;
        ASSERT_EQ(sf::detail::threading_plan(batch.batch(), batch.seq_len(), shape.threads),
                  shape.plan)
            << batch.batch() << " x " << batch.seq_len() << ", " << shape.threads << " threads";
        const RowMatrix<T> x = random_matrix<T>(batch.tokens(), 24, 6);
        const RowMatrix<T> one = stack.forward(x, batch, 1);
        EXPECT_LT(max_abs_diff(stack.forward(x, batch, shape.threads), one), tol<T>())
            << batch.batch() << " x " << batch.seq_len() << ", " << shape.threads << " threads, "
            << sf::to_string(norm) << (causal ? ", causal" : "");
      }
    }
}

TEST(Stack, ThreadingPlanFollowsTokensPerThread) {
  using Plan = sf::detail::ThreadPlan;
  const Index g = sf::detail::group_min_tokens, r = sf::detail::share_min_rows;
  EXPECT_EQ(sf::detail::threading_plan(8, 128, 1), Plan::Steps);
  EXPECT_EQ(sf::detail::threading_plan(2, g, 2), Plan::Groups);
  EXPECT_EQ(sf::detail::threading_plan(4, g / 2, 2), Plan::Groups);
  EXPECT_EQ(sf::detail::threading_plan(3, 2 * g, 2), Plan::Shares);  // uneven groups
  EXPECT_EQ(sf::detail::threading_plan(1, 2 * r, 2), Plan::Shares);
  EXPECT_EQ(sf::detail::threading_plan(1, 2 * r - 1, 2), Plan::Steps);
  EXPECT_EQ(sf::detail::threading_plan(1, 16, 2), Plan::Steps);
}

TEST(Stack, BatchSliceKeepsLengthsAndMasks) {
  const auto padded = sf::Batch::padded(6, {6, 2, 5, 1});
  const auto part = padded.slice(1, 2);
  EXPECT_EQ(part.batch(), 2);
  EXPECT_EQ(part.seq_len(), 6);
  EXPECT_EQ(part.lengths(), (std::vector<Index>{2, 5}));
  EXPECT_FALSE(part.has_key_mask());
  Eigen::Matrix<int, 3, 4> mask;
  mask << 1, 1, 1, 1,  //
      1, 0, 1, 0,      //
      0, 1, 1, 0;
  const auto holes = sf::Batch::from_mask(mask);
  sf::Batch into = sf::Batch::uniform(5, 9);
  holes.slice(1, 2, into);
  ASSERT_EQ(into.batch(), 2);
  EXPECT_EQ(into.seq_len(), 4);
  for (Index b = 0; b < 2; ++b) {
    EXPECT_EQ(into.length(b), holes.length(b + 1));
    for (Index s = 0; s < 4; ++s)
      EXPECT_EQ(into.key_valid(b, s), holes.key_valid(b + 1, s)) << b << ", " << s;
  }
  holes.slice(0, 1, into);  // back to prefix keys only: the mask of sequence 0 is all ones
  EXPECT_EQ(into.batch(), 1);
  EXPECT_TRUE(into.key_valid(0, 3));
  for (auto [first, count] : {std::pair<Index, Index>{0, 0}, {-1, 2}, {3, 2}, {0, 5}}) {
    try {
      padded.slice(first, count, into);
      ADD_FAILURE() << "no exception for " << first << ", " << count;
    } catch (const sf::ShapeError& e) {
      EXPECT_NE(std::string(e.what()).find("outside the batch of 4"), std::string::npos)
          << e.what();
    }
  }
}

TEST(Stack, SharedAllEqualsOneBlockAppliedNTimes) {
  sf::Stack<sf::SharedAll, double> stack(small_config(), 5);
  stack.randomize(7, 0.2, 0.1, 0.1);
  const sf::TransformerBlock<double> block(stack.config(), stack.attention(0), stack.ffn(0));
  const auto batch = sf::Batch::padded(6, {6, 3});
  RowMatrix<double> h = random_matrix<double>(12, 24, 8);
  const RowMatrix<double> y = stack.forward(h, batch, 1);
  sf::Workspace<double> ws;
  for (int i = 0; i < 5; ++i) block.forward(h, batch, ws, 1);
  EXPECT_EQ(max_abs_diff(y, h), 0.0);
}

TEST(Stack, ForwardIsConstAndReentrant) {
  sf::Stack<sf::SharedFfn, float> stack(small_config(), 6);
  stack.randomize(9, 0.2, 0.1, 0.1);
  const auto& shared = stack;
  const auto batch = sf::Batch::padded(8, {8, 5, 2});
  const RowMatrix<float> x = random_matrix<float>(batch.tokens(), 24, 10);
  const RowMatrix<float> expected = shared.forward(x, batch, 1);
  std::vector<double> worst(4, 0.0);
  std::vector<std::thread> threads;
  threads.reserve(4);
  for (int t = 0; t < 4; ++t)
    threads.emplace_back([&, t] {
      sf::Workspace<float> ws;
      for (int i = 0; i < 50; ++i) {
        RowMatrix<float> h = x;
        shared.forward(h, batch, ws, 1 + i % 2);
        worst[static_cast<std::size_t>(t)] = std::max(worst[static_cast<std::size_t>(t)],
                                                      (h - expected).cwiseAbs().maxCoeff() + 0.0);
      }
    });
  for (auto& th : threads) th.join();
  for (double w : worst) EXPECT_LT(w, 2e-5);
}

TEST(Stack, SteadyStateWorkspaceKeepsItsBuffers) {
  sf::Stack<sf::Unshared, float> stack(small_config(), 2);
  stack.randomize(1);
  const auto batch = sf::Batch::uniform(2, 5);
  RowMatrix<float> h = random_matrix<float>(10, 24, 1);
  sf::Workspace<float> ws;
  stack.forward(h, batch, ws, 1);
  const float* qkv = ws.qkv.data();
  const float* inner = ws.inner.data();
  stack.forward(h, batch, ws, 1);
  EXPECT_EQ(ws.qkv.data(), qkv);
  EXPECT_EQ(ws.inner.data(), inner);
}

TEST(Stack, BadInputThrowsNamedErrors) {
  auto c = small_config();
  c.d_model = 250;
  try {
    sf::Stack<sf::Unshared> bad(c, 2);
    FAIL() << "no exception";
  } catch (const sf::ConfigError& e) {
    EXPECT_STREQ(e.what(), "MultiHeadAttention: d_model (250) is not divisible by n_heads (4)");
  }
  c = small_config();
  c.d_ff = 0;
  EXPECT_THROW(sf::Stack<sf::Unshared>(c, 2), sf::ConfigError);
  EXPECT_THROW(sf::Stack<sf::Unshared>(small_config(), 0), sf::ConfigError);
  EXPECT_THROW(sf::Stack<sf::Sequence<4>>(small_config(), 6), sf::ConfigError);

  sf::Stack<sf::SharedAll> stack(small_config(), 2);
  const RowMatrix<float> wide = RowMatrix<float>::Zero(10, 25);
  try {
    stack.forward(wide, sf::Batch::uniform(2, 5));
    FAIL() << "no exception";
  } catch (const sf::ShapeError& e) {
    EXPECT_STREQ(e.what(), "Stack: input has 25 columns, expected d_model = 24");
  }
  const RowMatrix<float> x = RowMatrix<float>::Zero(10, 24);
  EXPECT_THROW(stack.forward(x, sf::Batch::uniform(3, 5)), sf::ShapeError);
  EXPECT_THROW(sf::Batch::padded(5, {5, 0}), sf::ShapeError);
  EXPECT_THROW(sf::Batch::padded(5, {6}), sf::ShapeError);
  EXPECT_THROW(sf::Batch::padded(5, {}), sf::ShapeError);
  EXPECT_THROW(sf::Batch::uniform(0, 5), sf::ShapeError);
  Eigen::Matrix<int, 1, 3> mask;
  mask << 1, 2, 0;
  EXPECT_THROW(sf::Batch::from_mask(mask), sf::ShapeError);
}
