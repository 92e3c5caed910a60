// SPDX-License-Identifier: MIT
// Thread-count resolution and a static parallel-for over a range of work items (OpenMP when
// present).
#pragma once

#include <shareformer/core/types.hpp>

#include <algorithm>
#include <exception>
#include <mutex>
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

/// Keeps the first exception that the threads of one parallel region throw, to rethrow on the
/// calling thread once the region is over: an exception may not leave an OpenMP region (the
/// process would end), so each thread's work runs inside guard().
class FirstException {
 public:
  /// Runs f, catching whatever it throws.
  template <typename F>
  void guard(F&& f) noexcept {
    try {
      f();
    } catch (...) {
      const std::lock_guard<std::mutex> lock(mutex_);
      if (!first_) first_ = std::current_exception();
    }
  }
  /// Rethrows the first exception caught, if any.
  void rethrow() const {
    if (first_) std::rethrow_exception(first_);
  }

 private:
  std::mutex mutex_;
  std::exception_ptr first_;
};

/// Calls body(begin, end, thread) on `threads` contiguous chunks of [0, count), in parallel when
/// OpenMP is enabled. Chunks are whole multiples of `grain` except the last. If a body throws, the
/// other chunks still run and the first exception is rethrown on the calling thread.
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
    FirstException error;
#pragma omp parallel for num_threads(n) schedule(static, 1)
    for (int t = 0; t < n; ++t) error.guard([&] { run(t); });
    error.rethrow();
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
  const int useful =
      static_cast<int>(std::min<Index>(threads, std::max<Index>(1, rows / min_rows)));
  parallel_chunks(rows, 1, useful, [&](Index begin, Index end, int) { body(begin, end); });
}

/// Calls body(item, thread) for each item in [0, count), items dealt round-robin to `threads`.
/// The deal is static so that a thread gets the same items every call: after one call of a given
/// shape, each thread's scratch is sized for its items and later calls allocate nothing. If a
/// body throws, the other items still run and the first exception is rethrown on the calling
/// thread.
template <typename Body>
void parallel_items(Index count, int threads, Body&& body) {
  const int n = static_cast<int>(std::min<Index>(std::max(threads, 1), std::max<Index>(count, 1)));
#if defined(_OPENMP)
  if (n > 1) {
    FirstException error;
#pragma omp parallel for num_threads(n) schedule(static, 1)
    for (Index i = 0; i < count; ++i) error.guard([&] { body(i, omp_get_thread_num()); });
    error.rethrow();
    return;
  }
#endif
  for (Index i = 0; i < count; ++i) body(i, 0);
}

/// Runs body(thread, threads) once on each thread of a team of up to `threads` threads (fewer when
/// OpenMP gives fewer, e.g. inside another parallel region; one without OpenMP). The body may call
/// barrier() to wait for the rest of its team. An exception a body throws is rethrown on the
/// calling thread after the team ends, but a thread that throws skips the barriers it has not
/// reached, on which the rest of its team would then wait for ever: whatever may throw (sizing
/// scratch memory) belongs before the team, and the body after it must not throw.
template <typename Body>
void parallel_team(int threads, Body&& body) {
#if defined(_OPENMP)
  if (threads > 1) {
    FirstException error;
#pragma omp parallel num_threads(threads)
    error.guard([&] { body(omp_get_thread_num(), omp_get_num_threads()); });
    error.rethrow();
    return;
  }
#endif
  body(0, 1);
}

/// Waits until every thread of the calling parallel_team reaches a barrier (nothing to wait for
/// outside one).
inline void barrier() {
#if defined(_OPENMP)
#pragma omp barrier
#endif
}

/// Tokens each thread must have for a forward to run groups of whole sequences on threads of
/// their own (ThreadPlan::Groups).
#ifndef SHAREFORMER_GROUP_MIN_TOKENS
#define SHAREFORMER_GROUP_MIN_TOKENS 128
#endif
inline constexpr Index group_min_tokens = SHAREFORMER_GROUP_MIN_TOKENS;

/// Rows each thread must have for a forward to give each thread a block of rows for the whole
/// forward (ThreadPlan::Shares).
#ifndef SHAREFORMER_SHARE_MIN_ROWS
#define SHAREFORMER_SHARE_MIN_ROWS 128
#endif
inline constexpr Index share_min_rows = SHAREFORMER_SHARE_MIN_ROWS;

/// How a forward spreads over its threads.
enum class ThreadPlan {
  Steps,   ///< each product, attention and norm split over the threads on its own
  Groups,  ///< each thread runs the whole forward on its own group of whole sequences
  Shares,  ///< each thread owns a block of rows for the whole forward, waiting for the others
           ///< only around attention
};

/// The plan of a forward over `sequences` sequences of `seq_len` tokens on `threads` threads:
/// Groups when the sequences split evenly into `threads` groups of at least group_min_tokens
/// tokens, else Shares with at least share_min_rows rows per thread, else Steps. Groups and Shares
/// keep each thread on its own rows, so no thread waits for another at every step and no product
/// splits the weights' columns; with few tokens Steps wins, as each thread then reads only part of
/// the weights.
inline ThreadPlan threading_plan(Index sequences, Index seq_len, int threads) {
  if (threads < 2) return ThreadPlan::Steps;
  if (sequences % threads == 0 && sequences / threads * seq_len >= group_min_tokens)
    return ThreadPlan::Groups;
  return sequences * seq_len >= threads * share_min_rows ? ThreadPlan::Shares : ThreadPlan::Steps;
}

}  // namespace detail
}  // namespace shareformer
