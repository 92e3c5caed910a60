// SPDX-License-Identifier: MIT
// Scaled dot-product attention for every (sequence, head) of a batch, from a fused QKV matrix.
#pragma once

#include <shareformer/core/batch.hpp>
#include <shareformer/core/parallel.hpp>
#include <shareformer/core/types.hpp>
#include <shareformer/ops/packed_matrix.hpp>
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

#ifndef SHAREFORMER_ATTENTION_BLOCK_BYTES
#define SHAREFORMER_ATTENTION_BLOCK_BYTES 131072
#endif
/// Query rows per block of one head's attention: as many as keep the block's scores within
/// SHAREFORMER_ATTENTION_BLOCK_BYTES, in whole kernel tiles (at least one). So the scores stay in
/// L2 between Q K^T, the softmax and P V instead of making three passes over seq_len^2 floats (1
/// MiB a head at 512 tokens, the whole L2 of a Zen 5 core), and a thread's scratch grows linearly
/// with seq_len. Measured (benchmarks/ab attn, 12 heads, 512 tokens, outputs bit-identical; Intel
/// Xeon with a 2 MiB L2, 2026-12-07): 128 KiB against no blocks 1.03-1.06x on 1 thread (five runs
/// of 12-30 rounds, d_head 64 and 32) and 1.03-1.08x on 2, where 8 x 128 tokens (one block, the
/// same work) moved by 0.96-1.08x in the same runs; 512 KiB 1.00-1.05x, 64 KiB 0.96-1.02x, 32 KiB
/// 0.87-1.00x. A whole 1 x 512 forward is 10 % attention: there, the same within the noise. Where
/// the unblocked scores overflow the L2 (1024 tokens, 4 MiB a head, same Xeon, three runs of 20
/// rounds): 1.17-1.31x on 1 thread, 1.09-1.14x on 2, and whole bert-base shared 1 x 1024 forwards
/// 1.03-1.06x on 1 thread, 1.10x on 2 (ab fwd, 8 rounds).
inline Index attention_block_rows(Index n_keys, std::size_t bytes_per_score) {
  const Index rows = SHAREFORMER_ATTENTION_BLOCK_BYTES / static_cast<Index>(bytes_per_score) /
                     std::max<Index>(n_keys, 1);
  return std::max<Index>(rows / small_gemm_rows * small_gemm_rows, small_gemm_rows);
}

/// Sizes an attention scratch buffer for a batch: (block + 2 d_head, seq_len), one block of
/// queries' scores (attention_block_rows, at most seq_len), then one head's K^T and V packed into
/// panels (d_head rows' worth each): memory linear in seq_len. Allocates only when its shape
/// differs.
template <typename T>
void size_attention_buffer(RowMatrix<T>& buffer, Index seq_len, Index d_head) {
  const Index rows = std::min(attention_block_rows(seq_len, sizeof(T)), seq_len) + 2 * d_head;
  if (buffer.rows() != rows || buffer.cols() != seq_len) buffer.resize(rows, seq_len);
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
  // Queries in blocks whose scores stay in L2 between the two products and the softmax.
  const Index block = buffer.rows() - 2 * d_head;
  T* kt = buffer.data() + block * ld;  // K^T (d_head, n_keys), packed
  T* vp = kt + d_head * ld;            // V (n_keys, d_head), packed
  pack_panels<T>(k.transpose(), kt);
  for (Index r0 = 0; r0 < rows; r0 += block) {
    const Index r = std::min(block, rows - r0);
    auto s = buffer.block(0, 0, r, n_keys);  // (r, n_keys), written from zero
    packed_gemm_block<T>(r, d_head, q.data() + r0 * qkv.outerStride(), qkv.outerStride(), kt,
                         n_keys, s.data(), ld, GemmStart<T>{}, 0, n_keys, none);
    for (Index i = 0; i < r; ++i) {
      const Index query = q0 + r0 + i;
      auto row = s.row(i);
      if (batch.has_key_mask()) {
        for (Index j = 0; j < n_keys; ++j)
          if (!batch.key_valid(b, j) || (causal && j > query))
            row(j) = -std::numeric_limits<T>::infinity();
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
    if (r0 == 0) pack_panels<T>(v, vp);  // here, not before Q K^T: in L1 for the first P V
    packed_gemm_block<T>(r, n_keys, s.data(), ld, vp, d_head, out.data() + r0 * ctx.outerStride(),
                         ctx.outerStride(), GemmStart<T>{}, 0, d_head, none);
  }
}

}  // namespace detail

/// ctx = softmax(Q K^T / sqrt(d_head) + mask) V for each sequence and head.
/// qkv: (tokens, 3 * d_model) = [Q | K | V], head h in columns [h * d_head, (h + 1) * d_head) of
/// each. ctx: (tokens, d_model), overwritten. scratch: one matrix per thread, a block of queries'
/// scores above one head's packed K^T and V (detail::size_attention_buffer; resized here only
/// when its shape differs). Padding keys get weight 0; padded query rows are computed like the
/// others; a query with no valid key gets a zero context.
///
/// Both products run on the packed small_gemm kernel (detail::packed_gemm_block): per head, K^T and
/// V are first copied into the scratch in PackedMatrix's panel layout, so that each streams as
/// contiguous panels. Read in place, successive rows of K^T lie seq_len floats apart and V's 3
/// d_model (2 KiB and 9 KiB at 512 tokens of bert-base: 2 and 4 of the 64 sets of a 48 KiB 12-way
/// L1). Measured against transposing K into the scratch and reading V in place (bench_ops
/// Attention, d 768, 12 heads, batch 1 and 8 x 128 and 512 tokens, 6 alternated rounds, medians of
/// the round medians; Intel Xeon, 2026-11-28): 1.12-1.23x faster on 1 thread, 1.06-1.22x on 2.
template <typename T>
void attention(ConstMatrixRef<T> qkv, const Batch& batch, Index n_heads, bool causal,
               MatrixRef<T> ctx, std::vector<RowMatrix<T>>& scratch, int threads) {
  const Index seq_len = batch.seq_len(), d_head = ctx.cols() / n_heads;
  const int n_threads = std::max(1, threads);
  if (static_cast<int>(scratch.size()) < n_threads)
    scratch.resize(static_cast<std::size_t>(n_threads));
  for (auto& m : scratch) detail::size_attention_buffer(m, seq_len, d_head);
  shareformer::detail::parallel_items(batch.batch() * n_heads, n_threads, [&](Index item, int t) {
    detail::attention_head<T>(qkv, batch, item / n_heads, item % n_heads, 0, seq_len, d_head,
                              causal, ctx, scratch[static_cast<std::size_t>(t)]);
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
