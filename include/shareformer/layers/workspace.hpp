// SPDX-License-Identifier: MIT
// Workspace: the scratch buffers of a forward pass, kept by the caller so that repeated forwards
// of the same shape allocate nothing.
#pragma once

#include <shareformer/core/batch.hpp>
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

  /// Sizes `groups` workspaces and batches for a forward that runs groups of sequences on threads
  /// of their own (see Stack::forward); a no-op when there are already that many.
  void prepare_groups(int groups) {
    const auto n = static_cast<std::size_t>(groups);
    if (group_workspaces.size() < n) group_workspaces.resize(n);
    while (group_batches.size() < n) group_batches.push_back(Batch::uniform(1, 1));
  }

  RowMatrix<T> qkv;                  ///< (tokens, 3 * d_model): fused Q | K | V
  RowMatrix<T> context;              ///< (tokens, d_model): attention output before its projection
  RowMatrix<T> normed;               ///< (tokens, d_model): pre-LN input of a sub-layer
  RowMatrix<T> inner;                ///< (tokens, d_ff): FFN hidden activations
  std::vector<RowMatrix<T>> scores;  ///< per thread: a block of scores, then K^T and V
  ops::GemmScratch<T> gemm;          ///< per-thread GEMM packing buffers
  std::vector<Workspace> group_workspaces;  ///< one per group of sequences run on its own thread
  std::vector<Batch> group_batches;         ///< the sequences of each group

 private:
  static void resize(RowMatrix<T>& m, Index rows, Index cols) {
    if (m.rows() != rows || m.cols() != cols) m.resize(rows, cols);
  }
};

/// One thread's share of a forward whose threads each own a block of rows for the whole forward:
/// rows [begin, end) of every activation, and the thread's own scratch (GEMM packing buffers,
/// attention buffer). Every step but attention reads only its own rows; attention reads every
/// row's keys and values, behind a barrier.
template <typename T>
struct RowShare {
  Index begin = 0;
  Index end = 0;
  Workspace<T>* own = nullptr;

  Index rows() const { return end - begin; }
  /// This thread's rows of m.
  template <typename M>
  auto of(M& m) const {
    return m.middleRows(begin, rows());
  }
};

}  // namespace shareformer
