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

namespace detail {

/// Keys of sequence b that attention reads: those up to its last valid one.
inline Index attended_keys(const Batch& batch, Index b) {
  if (!batch.has_key_mask()) return batch.length(b);
  Index n_keys = batch.seq_len();
  while (n_keys > 0 && !batch.key_valid(b, n_keys - 1)) --n_keys;
  return n_keys;
}

/// Sizes an attention scratch buffer for a batch: (seq_len + d_head, seq_len), the scores above the
/// transposed keys. Allocates only when its shape differs.
template <typename T>
void size_attention_buffer(RowMatrix<T>& buffer, Index seq_len, Index d_head) {
  if (buffer.rows() != seq_len + d_head || buffer.cols() != seq_len) buffer.resize(seq_len + d_head, seq_len);
}

/// Rows [q0, q1) (positions within the sequence) of head h's context for sequence b, written into
/// ctx (tokens, d_model); buffer sized by size_attention_buffer. See ops::attention.
template <typename T>
void attention_head(ConstMatrixRef<T> qkv, const Batch& batch, Index b, Index h, Index q0, Index q1,
                    Index d_head, bool causal, MatrixRef<T> ctx, RowMatrix<T>& buffer) {
  const Index seq_len = batch.seq_len(), d_model = ctx.cols(), row0 = b * seq_len, rows = q1 - q0;
  const T scale = T(1) / std::sqrt(static_cast<T>(d_head));
  const auto none = [](Index, Index) {};
  const Index n_keys = attended_keys(batch, b);
  auto out = ctx.block(row0 + q0, h * d_head, rows, d_head);
  if (n_keys == 0) {
    out.setZero();
    return;
  }
  const auto q = qkv.block(row0 + q0, h * d_head, rows, d_head);
  const auto k = qkv.block(row0, d_model + h * d_head, n_keys, d_head);
  const auto v = qkv.block(row0, 2 * d_model + h * d_head, n_keys, d_head);
  const Index ld = buffer.outerStride();
  auto kt = buffer.block(seq_len, 0, d_head, n_keys);  // K^T (d_head, n_keys)
  kt = k.transpose();
  auto s = buffer.block(0, 0, rows, n_keys);  // (rows, n_keys), written from zero
  small_gemm<T>(rows, d_head, q.data(), qkv.outerStride(), kt.data(), ld, s.data(), ld,
                GemmStart<T>{}, 0, n_keys, none);
  for (Index i = 0; i < rows; ++i) {
    const Index query = q0 + i;
    auto row = s.row(i);
    if (batch.has_key_mask()) {
      for (Index j = 0; j < n_keys; ++j)
        if (!batch.key_valid(b, j) || (causal && j > query)) row(j) = -std::numeric_limits<T>::infinity();
      const T max = row.maxCoeff();
      if (max == -std::numeric_limits<T>::infinity()) {
        row.setZero();
      } else {
        row = ((row.array() - max) * scale).exp().matrix();
        row *= T(1) / row.sum();
      }
    } else {
      softmax_prefix(row, causal ? std::min(n_keys, query + 1) : n_keys, scale);
    }
  }
  small_gemm<T>(rows, n_keys, s.data(), ld, v.data(), qkv.outerStride(), out.data(),
                ctx.outerStride(), GemmStart<T>{}, 0, d_head, none);
}

}  // namespace detail

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
  const Index seq_len = batch.seq_len(), d_head = ctx.cols() / n_heads;
  const int n_threads = std::max(1, threads);
  if (static_cast<int>(scratch.size()) < n_threads) scratch.resize(static_cast<std::size_t>(n_threads));
  for (auto& m : scratch) detail::size_attention_buffer(m, seq_len, d_head);
  shareformer::detail::parallel_items(batch.batch() * n_heads, n_threads, [&](Index item, int t) {
    detail::attention_head<T>(qkv, batch, item / n_heads, item % n_heads, 0, seq_len, d_head, causal,
                              ctx, scratch[static_cast<std::size_t>(t)]);
  });
}

/// Rows [row_begin, row_end) of ctx (token rows, which may cut through sequences) as in attention,
/// on the calling thread: one thread's share of a forward whose threads each own a block of rows.
/// Reads the keys and values of every sequence the rows touch. scratch: one buffer, sized here.
template <typename T>
void attention_rows(ConstMatrixRef<T> qkv, const Batch& batch, Index n_heads, bool causal,
                    MatrixRef<T> ctx, RowMatrix<T>& scratch, Index row_begin, Index row_end) {
  const Index seq_len = batch.seq_len(), d_head = ctx.cols() / n_heads;
  detail::size_attention_buffer(scratch, seq_len, d_head);
  for (Index b = row_begin / seq_len; b * seq_len < row_end; ++b) {
    const Index q0 = std::max(row_begin - b * seq_len, Index{0});
    const Index q1 = std::min(row_end - b * seq_len, seq_len);
    for (Index h = 0; h < n_heads; ++h)
      detail::attention_head<T>(qkv, batch, b, h, q0, q1, d_head, causal, ctx, scratch);
  }
}

}  // namespace shareformer::ops
