// SPDX-License-Identifier: MIT
// Thread-count resolution and a static parallel-for over a range of work items (OpenMP when present).
#pragma once

#include <shareformer/core/types.hpp>

#include <algorithm>
#include <thread>

#if defined(_OPENMP)
#include <omp.h>
#endif

namespace shareformer {

/// Threads used when a caller passes 0: the hardware's.
inline int hardware_threads() {
  const unsigned n = std::thread::hardware_concurrency();
  return n == 0 ? 1 : static_cast<int>(n);
}

namespace detail {

inline int resolve_threads(int threads) { return threads > 0 ? threads : hardware_threads(); }

/// Calls body(begin, end, thread) on `threads` contiguous chunks of [0, count), in parallel when
/// OpenMP is enabled. Chunks are whole multiples of `grain` except the last.
template <typename Body>
void parallel_chunks(Index count, Index grain, int threads, Body&& body) {
  const Index units = (count + grain - 1) / grain;
  const int n = static_cast<int>(std::min<Index>(std::max(threads, 1), std::max<Index>(units, 1)));
  auto run = [&](int t) {
    const Index u0 = units * t / n, u1 = units * (t + 1) / n;
    const Index begin = std::min(count, u0 * grain), end = std::min(count, u1 * grain);
    if (begin < end) body(begin, end, t);
  };
#if defined(_OPENMP)
  if (n > 1) {
#pragma omp parallel for num_threads(n) schedule(static, 1)
    for (int t = 0; t < n; ++t) run(t);
    return;
  }
#endif
  for (int t = 0; t < n; ++t) run(t);
}

/// Calls body(begin, end) on row ranges of a (rows, cols) element-wise job, on as many of `threads`
/// threads as there is work for (at least 32k elements each): small jobs stay on the caller.
template <typename Body>
void parallel_rows(Index rows, Index cols, int threads, Body&& body) {
  const Index min_rows = std::max<Index>(1, 32768 / std::max<Index>(cols, 1));
  const int useful = static_cast<int>(std::min<Index>(threads, std::max<Index>(1, rows / min_rows)));
  parallel_chunks(rows, 1, useful, [&](Index begin, Index end, int) { body(begin, end); });
}

/// Calls body(item, thread) for each item in [0, count), items dealt round-robin to `threads`.
/// The deal is static so that a thread gets the same items every call: after one call of a given
/// shape, each thread's scratch is sized for its items and later calls allocate nothing.
template <typename Body>
void parallel_items(Index count, int threads, Body&& body) {
  const int n = static_cast<int>(std::min<Index>(std::max(threads, 1), std::max<Index>(count, 1)));
#if defined(_OPENMP)
  if (n > 1) {
#pragma omp parallel for num_threads(n) schedule(static, 1)
    for (Index i = 0; i < count; ++i) body(i, omp_get_thread_num());
    return;
  }
#endif
  for (Index i = 0; i < count; ++i) body(i, 0);
}

}  // namespace detail
}  // namespace shareformer
