// SPDX-License-Identifier: MIT
// The shapes and inputs every benchmark shares: the two model presets and seeded Gaussian noise.
#pragma once

#include <shareformer/shareformer.hpp>

#include <random>

namespace bench {

/// 0: the seed's d 512, 8 heads, ff 2048; 1: bert-base's d 768, 12 heads, ff 3072; 2: MiniLM's
/// d 384, 12 heads of 32 columns, ff 1536.
inline shareformer::BlockConfig preset(int which) {
  shareformer::BlockConfig c;
  if (which == 1) {
    c.d_model = 768;
    c.n_heads = 12;
    c.d_ff = 3072;
  } else if (which == 2) {
    c.d_model = 384;
    c.n_heads = 12;
    c.d_ff = 1536;
  }
  return c;
}

/// A (rows, cols) matrix of standard normal values, the same for the same seed.
inline shareformer::RowMatrix<float> noise(shareformer::Index rows, shareformer::Index cols,
                                           unsigned seed) {
  std::mt19937 rng(seed);
  std::normal_distribution<float> normal;
  shareformer::RowMatrix<float> m(rows, cols);
  for (shareformer::Index i = 0; i < m.size(); ++i) m.data()[i] = normal(rng);
  return m;
}

}  // namespace bench
