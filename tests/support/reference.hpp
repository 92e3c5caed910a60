// SPDX-License-Identifier: MIT
// Naive-loop reference implementations, written independently of the library's ops, and test
// helpers.
#pragma once

#include <shareformer/shareformer.hpp>

#include <gtest/gtest.h>

#include <cmath>
#include <random>
#include <string>
#include <type_traits>
#include <vector>

namespace shareformer::testing {

/// A seeded matrix of N(0, 1) draws.
template <typename T>
RowMatrix<T> random_matrix(Index rows, Index cols, std::uint64_t seed) {
  std::mt19937_64 rng(seed);
  std::normal_distribution<double> normal(0.0, 1.0);
  RowMatrix<T> m(rows, cols);
  for (Index r = 0; r < rows; ++r)
    for (Index c = 0; c < cols; ++c) m(r, c) = static_cast<T>(normal(rng));
  return m;
}

/// Base of typed tests run for float and double: tol() is the error allowed against the naive
/// double reference for one op (grow it with the depth of a sum where that applies).
template <typename T>
class ScalarTest : public ::testing::Test {
 protected:
  static double tol() { return std::is_same_v<T, float> ? 2e-5 : 1e-12; }
};
using Scalars = ::testing::Types<float, double>;

/// A small ALBERT (embeddings 16 projected to d_model 32, 2 heads, d_ff 64, 4 layers sharing one
/// block) for tests that visit every Linear of an encoder.
inline EncoderConfig tiny_albert_config() {
  EncoderConfig config;
  config.model_type = ModelType::Albert;
  config.vocab_size = 50;
  config.max_position_embeddings = 32;
  config.embedding_size = 16;
  config.d_model = 32;
  config.n_heads = 2;
  config.d_ff = 64;
  config.n_layers = 4;
  return config;
}

/// Expects `next`, the block a pass of a packed product prefetches (ops::detail::NextBlock), to be
/// the block the following pass reads (`first`, `bytes`) when there is one in the thread's range
/// (`has_following`), else nothing.
inline void expect_next_block(const ops::detail::NextBlock& next, bool has_following,
                              const void* first, Index bytes, const std::string& where) {
  if (has_following) {
    EXPECT_EQ(next.first, first) << where;
    EXPECT_EQ(next.bytes, bytes) << where;
  } else {
    EXPECT_EQ(next.first, nullptr) << where << ": the range's last pass prefetches nothing";
    EXPECT_EQ(next.bytes, 0) << where;
  }
}

/// Largest absolute element-wise difference.
template <typename A, typename B>
double max_abs_diff(const A& a, const B& b) {
  EXPECT_EQ(a.rows(), b.rows());
  EXPECT_EQ(a.cols(), b.cols());
  double worst = 0;
  for (Index r = 0; r < a.rows(); ++r)
    for (Index c = 0; c < a.cols(); ++c)
      worst =
          std::max(worst, std::abs(static_cast<double>(a(r, c)) - static_cast<double>(b(r, c))));
  return worst;
}

namespace naive {

using M = RowMatrix<double>;

/// y[i][o] = b[o] + sum_k x[i][k] w[k][o]
inline M linear(const M& x, const M& w, const M& b) {
  M y(x.rows(), w.cols());
  for (Index i = 0; i < x.rows(); ++i)
    for (Index o = 0; o < w.cols(); ++o) {
      double acc = b(0, o);
      for (Index k = 0; k < x.cols(); ++k) acc += x(i, k) * w(k, o);
      y(i, o) = acc;
    }
  return y;
}

inline M layer_norm(const M& x, const M& gamma, const M& beta, double eps) {
  M y(x.rows(), x.cols());
  const double n = static_cast<double>(x.cols());
  for (Index i = 0; i < x.rows(); ++i) {
    double mean = 0, var = 0;
    for (Index k = 0; k < x.cols(); ++k) mean += x(i, k);
    mean /= n;
    for (Index k = 0; k < x.cols(); ++k) var += (x(i, k) - mean) * (x(i, k) - mean);
    var /= n;
    for (Index k = 0; k < x.cols(); ++k)
      y(i, k) = (x(i, k) - mean) / std::sqrt(var + eps) * gamma(0, k) + beta(0, k);
  }
  return y;
}

inline double activation(Activation a, double v) {
  const double pi = 3.14159265358979323846;
  switch (a) {
    case Activation::GeluErf: return 0.5 * v * (1.0 + std::erf(v / std::sqrt(2.0)));
    case Activation::GeluTanh:
      return 0.5 * v * (1.0 + std::tanh(std::sqrt(2.0 / pi) * (v + 0.044715 * v * v * v)));
    case Activation::Relu: return v > 0 ? v : 0.0;
  }
  return 0;
}

/// Multi-head attention from separate per-sequence loops; keys j of sequence b are valid when
/// batch.key_valid(b, j) (and j <= i when causal).
inline M attention(const M& q, const M& k, const M& v, const Batch& batch, Index n_heads,
                   bool causal) {
  const Index s_len = batch.seq_len(), d = q.cols(), dh = d / n_heads;
  M ctx = M::Zero(q.rows(), d);
  for (Index b = 0; b < batch.batch(); ++b)
    for (Index h = 0; h < n_heads; ++h)
      for (Index i = 0; i < s_len; ++i) {
        std::vector<double> w(static_cast<std::size_t>(s_len), 0.0);
        double max = -INFINITY;
        bool any = false;
        for (Index j = 0; j < s_len; ++j) {
          if (!batch.key_valid(b, j) || (causal && j > i)) continue;
          double dot = 0;
          for (Index c = 0; c < dh; ++c)
            dot += q(b * s_len + i, h * dh + c) * k(b * s_len + j, h * dh + c);
          w[static_cast<std::size_t>(j)] = dot / std::sqrt(static_cast<double>(dh));
          max =
              any ? std::max(max, w[static_cast<std::size_t>(j)]) : w[static_cast<std::size_t>(j)];
          any = true;
        }
        if (!any) continue;
        double sum = 0;
        for (Index j = 0; j < s_len; ++j) {
          const bool valid = batch.key_valid(b, j) && !(causal && j > i);
          double& e = w[static_cast<std::size_t>(j)];
          e = valid ? std::exp(e - max) : 0.0;
          sum += e;
        }
        for (Index j = 0; j < s_len; ++j)
          for (Index c = 0; c < dh; ++c)
            ctx(b * s_len + i, h * dh + c) +=
                w[static_cast<std::size_t>(j)] / sum * v(b * s_len + j, h * dh + c);
      }
  return ctx;
}

template <typename T>
M to_double(const RowMatrix<T>& m) {
  return m.template cast<double>();
}
template <typename T>
M to_double(const RowVector<T>& m) {
  return m.template cast<double>();
}

/// One attention sub-layer (post- or pre-LN) applied to x, from the layer's weights.
template <typename T>
M attention_sublayer(const AttentionSublayer<T>& s, const M& x, const Batch& batch) {
  const auto& mha = s.attention();
  const Index d = mha.d_model();
  const M in =
      s.placement() == NormPlacement::Pre
          ? layer_norm(x, to_double(s.norm().gamma()), to_double(s.norm().beta()), s.norm().eps())
          : x;
  const M qkv = linear(in, to_double(mha.qkv().weight()), to_double(mha.qkv().bias()));
  const M ctx = attention(qkv.leftCols(d), qkv.middleCols(d, d), qkv.rightCols(d), batch,
                          mha.n_heads(), mha.causal());
  M y = x + linear(ctx, to_double(mha.out().weight()), to_double(mha.out().bias()));
  if (s.placement() == NormPlacement::Post)
    y = layer_norm(y, to_double(s.norm().gamma()), to_double(s.norm().beta()), s.norm().eps());
  return y;
}

/// One FFN sub-layer (post- or pre-LN) applied to x.
template <typename T>
M ffn_sublayer(const FfnSublayer<T>& s, const M& x) {
  const auto& f = s.ffn();
  const M in =
      s.placement() == NormPlacement::Pre
          ? layer_norm(x, to_double(s.norm().gamma()), to_double(s.norm().beta()), s.norm().eps())
          : x;
  M hidden = linear(in, to_double(f.in().weight()), to_double(f.in().bias()));
  for (Index i = 0; i < hidden.rows(); ++i)
    for (Index c = 0; c < hidden.cols(); ++c)
      hidden(i, c) = activation(f.activation(), hidden(i, c));
  M y = x + linear(hidden, to_double(f.out().weight()), to_double(f.out().bias()));
  if (s.placement() == NormPlacement::Post)
    y = layer_norm(y, to_double(s.norm().gamma()), to_double(s.norm().beta()), s.norm().eps());
  return y;
}

/// A whole stack, layer by layer through the layer -> slot table.
template <typename Policy, typename T>
M stack(const Stack<Policy, T>& st, const M& x, const Batch& batch) {
  M h = x;
  for (Index l = 0; l < st.n_layers(); ++l) {
    h = attention_sublayer(st.attention(l), h, batch);
    h = ffn_sublayer(st.ffn(l), h);
  }
  if (st.config().has_final_norm())
    h = layer_norm(h, to_double(st.final_norm().gamma()), to_double(st.final_norm().beta()),
                   st.final_norm().eps());
  return h;
}

}  // namespace naive
}  // namespace shareformer::testing
