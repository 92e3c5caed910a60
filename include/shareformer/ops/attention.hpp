// SPDX-License-Identifier: MIT
// Scaled dot-product attention for every (sequence, head) of a batch, from a fused QKV matrix.
#pragma once

#include <shareformer/core/batch.hpp>
#include <shareformer/core/parallel.hpp>
#include <shareformer/core/types.hpp>
#include <shareformer/ops/small_gemm.hpp>
#include <shareformer/ops/softmax.hpp>

#include <algorithm>
#include <cmath>
#include <limits>
#include <vector>

namespace shareformer::ops {

/// ctx = softmax(Q K^T / sqrt(d_head) + mask) V for each sequence and head.
/// qkv: (tokens, 3 * d_model) = [Q | K | V], head h in columns [h * d_head, (h + 1) * d_head) of each.
/// ctx: (tokens, d_model), overwritten. scratch: one (seq_len + d_head, seq_len) matrix per thread,
/// the scores above the transposed keys (resized here only when its shape differs). Padding keys
/// get weight 0; padded query rows are computed like the others; a query with no valid key gets a
/// zero context. Both products run on the small_gemm kernel, which reads its operands in place
/// (K is transposed once per head so that it reads as a row-major right-hand side).
template <typename T>
void attention(ConstMatrixRef<T> qkv, const Batch& batch, Index n_heads, bool causal,
               MatrixRef<T> ctx, std::vector<RowMatrix<T>>& scratch, int threads) {
  const Index seq_len = batch.seq_len(), d_model = ctx.cols(), d_head = d_model / n_heads;
  const T scale = T(1) / std::sqrt(static_cast<T>(d_head));
  const int n_threads = std::max(1, threads);
  if (static_cast<int>(scratch.size()) < n_threads) scratch.resize(static_cast<std::size_t>(n_threads));
  for (auto& m : scratch)
    if (m.rows() != seq_len + d_head || m.cols() != seq_len) m.resize(seq_len + d_head, seq_len);
  const auto none = [](Index, Index) {};

  shareformer::detail::parallel_items(batch.batch() * n_heads, n_threads, [&](Index item, int t) {
    const Index b = item / n_heads, h = item % n_heads, row0 = b * seq_len;
    // Keys past the last valid one are never read.
    Index n_keys = batch.length(b);
    if (batch.has_key_mask())
      for (n_keys = seq_len; n_keys > 0 && !batch.key_valid(b, n_keys - 1);) --n_keys;
    auto out = ctx.block(row0, h * d_head, seq_len, d_head);
    if (n_keys == 0) {
      out.setZero();
      return;
    }
    const auto q = qkv.block(row0, h * d_head, seq_len, d_head);
    const auto k = qkv.block(row0, d_model + h * d_head, n_keys, d_head);
    const auto v = qkv.block(row0, 2 * d_model + h * d_head, n_keys, d_head);
    RowMatrix<T>& buffer = scratch[static_cast<std::size_t>(t)];
    const Index ld = buffer.outerStride();
    auto kt = buffer.block(seq_len, 0, d_head, n_keys);  // K^T (d_head, n_keys)
    kt = k.transpose();
    auto s = buffer.block(0, 0, seq_len, n_keys);  // (seq_len, n_keys), written from zero
    detail::small_gemm<T>(seq_len, d_head, q.data(), qkv.outerStride(), kt.data(), ld, s.data(), ld,
                          GemmStart<T>{}, 0, n_keys, none);
    for (Index i = 0; i < seq_len; ++i) {
      auto row = s.row(i);
      if (batch.has_key_mask()) {
        for (Index j = 0; j < n_keys; ++j)
          if (!batch.key_valid(b, j) || (causal && j > i))
            row(j) = -std::numeric_limits<T>::infinity();
        const T max = row.maxCoeff();
        if (max == -std::numeric_limits<T>::infinity()) {
          row.setZero();
        } else {
          row = ((row.array() - max) * scale).exp().matrix();
          row *= T(1) / row.sum();
        }
      } else {
        softmax_prefix(row, causal ? std::min(n_keys, i + 1) : n_keys, scale);
      }
    }
    detail::small_gemm<T>(seq_len, n_keys, s.data(), ld, v.data(), qkv.outerStride(), out.data(),
                          ctx.outerStride(), GemmStart<T>{}, 0, d_head, none);
  });
}

}  // namespace shareformer::ops
