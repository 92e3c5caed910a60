// SPDX-License-Identifier: MIT
// Matrix products on row-major views through Eigen's single-threaded GEBP kernel, split over threads.
#pragma once

#include <shareformer/core/parallel.hpp>
#include <shareformer/core/types.hpp>

#include <Eigen/Core>
#include <cassert>

namespace shareformer::ops {

namespace detail {

// Eigen's own GEMM would spawn its own OpenMP team from nbThreads(), a process-wide setting; calling
// its kernel directly keeps the thread count a per-call parameter and makes forward re-entrant.
template <typename T, int RhsOrder>
void gemm_kernel(Index m, Index n, Index k, const T* a, Index lda, const T* b, Index ldb, T* c,
                 Index ldc) {
  if (m == 0 || n == 0 || k == 0) return;
  using Kernel = Eigen::internal::general_matrix_matrix_product<Index, T, Eigen::RowMajor, false, T,
                                                                RhsOrder, false, Eigen::RowMajor, 1>;
  Eigen::internal::gemm_blocking_space<Eigen::RowMajor, T, T, Eigen::Dynamic, Eigen::Dynamic,
                                       Eigen::Dynamic, 1, false>
      blocking(m, n, k, 1, true);
  Kernel::run(m, n, k, a, lda, b, ldb, c, 1, ldc, T(1), blocking, nullptr);
}

}  // namespace detail

/// c += a * b. a (m, k), b (k, n), c (m, n), all row-major with any outer stride. Splits the
/// columns of c (or its rows, when there are many) over `threads` threads.
template <typename T>
void gemm_accumulate(ConstMatrixRef<T> a, ConstMatrixRef<T> b, MatrixRef<T> c, int threads = 1) {
  assert(a.cols() == b.rows() && c.rows() == a.rows() && c.cols() == b.cols());
  const Index m = a.rows(), n = b.cols(), k = a.cols();
  // Row panels keep each thread's share of b (the weights) whole in cache when there are many
  // tokens; column panels split the weights themselves when there are few.
  const bool by_rows = m >= 64 * threads;
  const Index grain = by_rows ? 8 : 16;
  shareformer::detail::parallel_chunks(by_rows ? m : n, grain, threads,
                                       [&](Index begin, Index end, int) {
    if (by_rows) {
      detail::gemm_kernel<T, Eigen::RowMajor>(end - begin, n, k, a.data() + begin * a.outerStride(),
                                              a.outerStride(), b.data(), b.outerStride(),
                                              c.data() + begin * c.outerStride(), c.outerStride());
    } else {
      detail::gemm_kernel<T, Eigen::RowMajor>(m, end - begin, k, a.data(), a.outerStride(),
                                              b.data() + begin, b.outerStride(), c.data() + begin,
                                              c.outerStride());
    }
  });
}

/// c += a * b^T on one thread. a (m, k), b (n, k), c (m, n), row-major with any outer stride:
/// attention scores Q K^T without materialising K^T.
template <typename T>
void gemm_nt_accumulate(ConstMatrixRef<T> a, ConstMatrixRef<T> b, MatrixRef<T> c) {
  assert(a.cols() == b.cols() && c.rows() == a.rows() && c.cols() == b.rows());
  // A row-major (n, k) b is a column-major (k, n) b^T with the same stride.
  detail::gemm_kernel<T, Eigen::ColMajor>(a.rows(), b.rows(), a.cols(), a.data(), a.outerStride(),
                                          b.data(), b.outerStride(), c.data(), c.outerStride());
}

}  // namespace shareformer::ops
