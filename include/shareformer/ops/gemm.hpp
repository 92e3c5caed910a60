// SPDX-License-Identifier: MIT
// Matrix products on row-major views through Eigen's single-threaded GEBP kernel, split over
// threads.
#pragma once

#include <shareformer/core/parallel.hpp>
#include <shareformer/core/types.hpp>
#include <shareformer/ops/packed_matrix.hpp>
#include <shareformer/ops/small_gemm.hpp>

#include <Eigen/Core>
#include <cassert>
#include <type_traits>
#include <utility>
#include <vector>

namespace shareformer::ops {

/// Packing buffers of Eigen's GEBP kernel for one thread, kept between calls so that a
/// steady-state product allocates nothing. Grows to the largest product it has seen.
template <typename T>
class GemmBlocking : public Eigen::internal::level3_blocking<T, T> {
 public:
  /// Chooses the block sizes for c (m, n) += a (m, k) b (k, n) and points the kernel at buffers
  /// large enough for them.
  void prepare(Index m, Index n, Index k) {
    // A row-major product runs as the column-major kernel on the transpose: rows and cols swap.
    this->m_mc = n;
    this->m_nc = m;
    this->m_kc = k;
    Eigen::internal::computeProductBlockingSizes<T, T, 1, Index>(this->m_kc, this->m_mc, this->m_nc,
                                                                 Index(1));
    grow(a_, this->m_mc * this->m_kc);
    grow(b_, this->m_kc * this->m_nc);
    this->m_blockA = a_.data();
    this->m_blockB = b_.data();
  }

 private:
  static void grow(std::vector<T, Eigen::aligned_allocator<T>>& buffer, Index size) {
    if (static_cast<Index>(buffer.size()) < size) buffer.resize(static_cast<std::size_t>(size));
  }

  std::vector<T, Eigen::aligned_allocator<T>> a_;
  std::vector<T, Eigen::aligned_allocator<T>> b_;
};

/// One GemmBlocking per thread.
template <typename T>
class GemmScratch {
 public:
  GemmBlocking<T>& for_thread(int t) {
    if (static_cast<int>(threads_.size()) <= t) threads_.resize(static_cast<std::size_t>(t) + 1);
    return threads_[static_cast<std::size_t>(t)];
  }
  /// Creates the per-thread slots up front, so that for_thread never resizes inside a parallel
  /// region.
  void reserve_threads(int n) {
    if (static_cast<int>(threads_.size()) < n) threads_.resize(static_cast<std::size_t>(n));
  }
  /// A buffer of at least `size` bfloat16s (the rounded activations of a bfloat16 product), grown
  /// to the largest size asked for and kept.
  Eigen::bfloat16* bf16_rows(Index size) {
    if (static_cast<Index>(bf16_rows_.size()) < size)
      bf16_rows_.resize(static_cast<std::size_t>(size));
    return bf16_rows_.data();
  }

 private:
  std::vector<GemmBlocking<T>> threads_;
  std::vector<Eigen::bfloat16, Eigen::aligned_allocator<Eigen::bfloat16>> bf16_rows_;
};

namespace detail {

// Eigen's own GEMM would spawn its own OpenMP team from nbThreads(), a process-wide setting;
// calling its kernel directly keeps the thread count a per-call parameter and makes forward
// re-entrant.
template <typename T, int RhsOrder>
void gemm_kernel(Index m, Index n, Index k, const T* a, Index lda, const T* b, Index ldb, T* c,
                 Index ldc, GemmBlocking<T>& blocking) {
  if (m == 0 || n == 0 || k == 0) return;
  using Kernel =
      Eigen::internal::general_matrix_matrix_product<Index, T, Eigen::RowMajor, false, T, RhsOrder,
                                                     false, Eigen::RowMajor, 1>;
  blocking.prepare(m, n, k);
  Kernel::run(m, n, k, a, lda, b, ldb, c, 1, ldc, T(1), blocking, nullptr);
}

}  // namespace detail

/// Products with at most this many rows use the register-blocked small_gemm kernel, which reads
/// b (the weights) in place; larger ones go to Eigen's GEBP entry point (OpenBLAS's sgemm with
/// SHAREFORMER_USE_BLAS). Measured here (bench_ops GemmRoute, AVX-512, OpenBLAS 0.3.21 at its
/// AVX-512 kernels, 1 and 2 threads): small_gemm is as fast as or faster than OpenBLAS up to 1024
/// rows (2 threads: 1.04-1.4x) and faster than Eigen's GEBP everywhere; OpenBLAS wins 6-9 % at
/// 4096 rows of 3072 -> 768. So without BLAS every product takes small_gemm, and with it only
/// products over 1024 rows go to OpenBLAS.
#ifndef SHAREFORMER_SMALL_GEMM_MAX_ROWS
#if defined(SHAREFORMER_USE_BLAS)
#define SHAREFORMER_SMALL_GEMM_MAX_ROWS 1024
#else
#define SHAREFORMER_SMALL_GEMM_MAX_ROWS 1000000000
#endif
#endif
inline constexpr Index small_gemm_max_rows = SHAREFORMER_SMALL_GEMM_MAX_ROWS;

/// Products with at most this many rows read a Linear's bfloat16 weights when it has them
/// (Linear::use_bf16_weights); larger ones, bound by arithmetic rather than by streaming the
/// weights, read its float weights (which hold the same rounded values: the same sums either way).
/// Measured (Intel Xeon, 2026-11-29, benchmarks/ab --weights bf16, whole bert-base forwards, 20-30
/// rounds in one process): at 1 x 64 tokens the float weights were 1.09-1.11x faster than the
/// bfloat16 ones on 1 thread and 1.03-1.04x on 2 (shared and unshared), so 32 rather than the 64
/// it was; at 1 x 32 bfloat16 was 1.03x faster for an unshared stack (its weights from memory) and
/// 0.93x for a shared one (in L3). Not measured on the AMD EPYC.
#ifndef SHAREFORMER_BF16_GEMM_MAX_ROWS
#define SHAREFORMER_BF16_GEMM_MAX_ROWS 32
#endif
inline constexpr Index bf16_gemm_max_rows = SHAREFORMER_BF16_GEMM_MAX_ROWS;

/// An epilogue that does nothing.
struct NoEpilogue {
  void operator()(Index, Index, Index, Index) const {}
};

namespace detail {

/// gemm_into through the small_gemm kernel: each thread streams its own columns of b (the
/// weights) in place. b is a row-major matrix of T or (T = float) of bfloat16.
template <typename T, typename BMatrix, typename Epilogue>
void gemm_small_path(ConstMatrixRef<T> a, const BMatrix& b, GemmStart<T> start, MatrixRef<T> c,
                     int threads, Epilogue&& epilogue) {
  const Index m = a.rows(), n = b.cols(), k = a.cols();
  shareformer::detail::parallel_chunks(
      n, small_gemm_panel<T>, threads, [&](Index begin, Index end, int) {
        small_gemm<T>(m, k, a.data(), a.outerStride(), b.data(), b.outerStride(), c.data(),
                      c.outerStride(), start, begin, end,
                      [&](Index col, Index cols) { epilogue(Index(0), m, col, cols); });
      });
}

/// c = start, rows split over threads like the element-wise ops: the starting value for the
/// kernels that accumulate onto c (Eigen's GEBP, OpenBLAS). Nothing to do when start is c itself.
template <typename T>
void materialize_start(GemmStart<T> start, MatrixRef<T> c, int threads) {
  if (start.c0 == c.data() && start.ld == c.outerStride() && start.bias == nullptr) return;
  shareformer::detail::parallel_rows(c.rows(), c.cols(), threads, [&](Index begin, Index end) {
    for (Index r = begin; r < end; ++r) {
      auto row = c.row(r);
      if (start.c0 == nullptr)
        row.setZero();
      else if (start.c0 != c.data())
        row = Eigen::Map<const RowVector<T>>(start.c0 + r * start.ld, c.cols());
      if (start.bias != nullptr) row += Eigen::Map<const RowVector<T>>(start.bias, c.cols());
    }
  });
}

/// gemm_accumulate through Eigen's GEBP entry point (OpenBLAS's sgemm with SHAREFORMER_USE_BLAS),
/// one single-threaded call per thread. Row panels keep each thread's share of b (the weights)
/// whole in cache when there are many tokens; column panels split the weights themselves when
/// there are few.
template <typename T, typename Epilogue>
void gemm_blocked_path(ConstMatrixRef<T> a, ConstMatrixRef<T> b, MatrixRef<T> c, int threads,
                       GemmScratch<T>& scratch, Epilogue&& epilogue) {
  const Index m = a.rows(), n = b.cols(), k = a.cols();
  const bool by_rows = m >= 64 * Index{threads};
  const Index grain = by_rows ? 8 : 16;
  scratch.reserve_threads(threads);
  shareformer::detail::parallel_chunks(
      by_rows ? m : n, grain, threads, [&](Index begin, Index end, int t) {
        GemmBlocking<T>& blocking = scratch.for_thread(t);
        if (by_rows) {
          gemm_kernel<T, Eigen::RowMajor>(
              end - begin, n, k, a.data() + begin * a.outerStride(), a.outerStride(), b.data(),
              b.outerStride(), c.data() + begin * c.outerStride(), c.outerStride(), blocking);
          epilogue(begin, end - begin, Index(0), n);
        } else {
          gemm_kernel<T, Eigen::RowMajor>(m, end - begin, k, a.data(), a.outerStride(),
                                          b.data() + begin, b.outerStride(), c.data() + begin,
                                          c.outerStride(), blocking);
          epilogue(Index(0), m, begin, end - begin);
        }
      });
}

}  // namespace detail

/// c = start + a * b. a (m, k), b (k, n), c (m, n), all row-major with any outer stride; start
/// (see GemmStart) is c itself, another (m, n) matrix or zero, plus an optional bias row. Splits
/// the columns of c (or its rows, when there are many) over `threads` threads; scratch keeps each
/// thread's packing buffers. epilogue(row, rows, col, cols) is called once on every block of c
/// when that block is final, by the thread that computed it (e.g. to apply an activation).
template <typename T, typename Epilogue = NoEpilogue>
void gemm_into(ConstMatrixRef<T> a, ConstMatrixRef<T> b, GemmStart<T> start, MatrixRef<T> c,
               int threads, GemmScratch<T>& scratch, Epilogue&& epilogue = {}) {
  assert(a.cols() == b.rows() && c.rows() == a.rows() && c.cols() == b.cols());
  if (a.rows() <= small_gemm_max_rows) {
    detail::gemm_small_path<T>(a, b, start, c, threads, epilogue);
  } else {
    detail::materialize_start<T>(start, c, threads);
    detail::gemm_blocked_path<T>(a, b, c, threads, scratch, epilogue);
  }
}

/// c = start + a * b with b's elements stored as bfloat16 (half the bytes of float): read in place
/// by the small_gemm kernel and widened exactly to float, so the result is the float product with
/// the weights b holds. For inputs with few rows, where streaming the weights is what takes the
/// time.
template <typename T, typename Epilogue = NoEpilogue, typename B,
          std::enable_if_t<std::is_same_v<B, RowMatrix<Eigen::bfloat16>>, int> = 0>
void gemm_into(ConstMatrixRef<T> a, const B& b, GemmStart<T> start, MatrixRef<T> c, int threads,
               GemmScratch<T>& /*unused: this path packs nothing*/, Epilogue&& epilogue = {}) {
  static_assert(std::is_same_v<T, float>, "bfloat16 weights multiply float activations");
  assert(a.cols() == b.rows() && c.rows() == a.rows() && c.cols() == b.cols());
  detail::gemm_small_path<T>(a, b, start, c, threads, epilogue);
}

/// c = start + a * b with b packed (PackedMatrix, elements T or, for T = float, bfloat16): the
/// small_gemm kernel streams each panel once per block of rows (one block while the rows'
/// activations fit a budget per CPU, see detail::packed_gemm_whole_bytes_for). Each thread takes
/// whole panels.
template <typename T, typename Epilogue = NoEpilogue, typename B>
void gemm_into(ConstMatrixRef<T> a, const PackedMatrix<T, B>& b, GemmStart<T> start, MatrixRef<T> c,
               int threads, GemmScratch<T>& /*unused: b is packed already*/,
               Epilogue&& epilogue = {}) {
  assert(a.cols() == b.rows() && c.rows() == a.rows() && c.cols() == b.cols());
  const Index m = a.rows(), n = b.cols(), k = a.cols();
  shareformer::detail::parallel_chunks(
      n, detail::small_gemm_panel<T>, threads, [&](Index begin, Index end, int) {
        detail::packed_gemm<T>(m, k, a.data(), a.outerStride(), b.data(), n, c.data(),
                               c.outerStride(), start, begin, end, epilogue);
      });
}

/// c += a * b for any b gemm_into takes (a row-major matrix of T, of bfloat16, or a PackedMatrix).
template <typename T, typename Epilogue = NoEpilogue, typename B>
void gemm_accumulate(ConstMatrixRef<T> a, const B& b, MatrixRef<T> c, int threads,
                     GemmScratch<T>& scratch, Epilogue&& epilogue = {}) {
  gemm_into<T>(a, b, GemmStart<T>{c.data(), c.outerStride(), nullptr}, c, threads, scratch,
               std::forward<Epilogue>(epilogue));
}

/// c += a * b with temporary packing buffers (convenient, allocates).
template <typename T>
void gemm_accumulate(ConstMatrixRef<T> a, ConstMatrixRef<T> b, MatrixRef<T> c, int threads = 1) {
  GemmScratch<T> scratch;
  gemm_accumulate<T>(a, b, c, threads, scratch);
}

/// c += a * b^T on the calling thread. a (m, k), b (n, k), c (m, n), row-major with any outer
/// stride: attention scores Q K^T without materialising K^T.
template <typename T>
void gemm_nt_accumulate(ConstMatrixRef<T> a, ConstMatrixRef<T> b, MatrixRef<T> c,
                        GemmBlocking<T>& blocking) {
  assert(a.cols() == b.cols() && c.rows() == a.rows() && c.cols() == b.rows());
  // A row-major (n, k) b is a column-major (k, n) b^T with the same stride.
  detail::gemm_kernel<T, Eigen::ColMajor>(a.rows(), b.rows(), a.cols(), a.data(), a.outerStride(),
                                          b.data(), b.outerStride(), c.data(), c.outerStride(),
                                          blocking);
}

/// c += a * b on the calling thread, with the given packing buffers.
template <typename T>
void gemm_serial_accumulate(ConstMatrixRef<T> a, ConstMatrixRef<T> b, MatrixRef<T> c,
                            GemmBlocking<T>& blocking) {
  assert(a.cols() == b.rows() && c.rows() == a.rows() && c.cols() == b.cols());
  detail::gemm_kernel<T, Eigen::RowMajor>(a.rows(), b.cols(), a.cols(), a.data(), a.outerStride(),
                                          b.data(), b.outerStride(), c.data(), c.outerStride(),
                                          blocking);
}

}  // namespace shareformer::ops
