// SPDX-License-Identifier: MIT
// Workspace: the scratch buffers of a forward pass, kept by the caller so that repeated forwards
// of the same shape allocate nothing.
#pragma once

#include <shareformer/core/config.hpp>
#include <shareformer/core/types.hpp>
#include <shareformer/ops/gemm.hpp>

#include <vector>

namespace shareformer {

/// Scratch memory for one forward at a time. Not shared between threads: give each its own.
template <typename T>
class Workspace {
 public:
  /// Sizes every buffer for `tokens` rows of a block with config c; a no-op when already sized.
  void prepare(Index tokens, const BlockConfig& c) {
    resize(qkv, tokens, 3 * c.d_model);
    resize(context, tokens, c.d_model);
    resize(normed, tokens, c.d_model);
    resize(inner, tokens, c.d_ff);
  }

  RowMatrix<T> qkv;      ///< (tokens, 3 * d_model): fused Q | K | V
  RowMatrix<T> context;  ///< (tokens, d_model): attention output before its projection
  RowMatrix<T> normed;   ///< (tokens, d_model): pre-LN input of a sub-layer
  RowMatrix<T> inner;    ///< (tokens, d_ff): FFN hidden activations
  std::vector<RowMatrix<T>> scores;  ///< per thread: (seq_len, seq_len) scores, then K^T
  ops::GemmScratch<T> gemm;          ///< per-thread GEMM packing buffers

 private:
  static void resize(RowMatrix<T>& m, Index rows, Index cols) {
    if (m.rows() != rows || m.cols() != cols) m.resize(rows, cols);
  }
};

}  // namespace shareformer
