// SPDX-License-Identifier: MIT
// A steady-state forward allocates nothing: global operator new is counted around a second forward
// with a kept Workspace.
#include "support/reference.hpp"

#include <shareformer/shareformer.hpp>

#include <gtest/gtest.h>

#include <atomic>
#include <cstdlib>
#include <new>
#include <thread>
#include <vector>

namespace {
std::atomic<long> g_allocations{0};
std::atomic<long> g_other_thread_allocations{0};  // made by a thread other than the test's
std::atomic<bool> g_counting{false};
thread_local bool t_test_thread = false;
[[maybe_unused]] void note() {
  if (!g_counting.load(std::memory_order_relaxed)) return;
  g_allocations.fetch_add(1, std::memory_order_relaxed);
  if (!t_test_thread) g_other_thread_allocations.fetch_add(1, std::memory_order_relaxed);
}
}  // namespace

#if defined(__has_feature)
#if __has_feature(address_sanitizer)
#define SHAREFORMER_TEST_ASAN 1
#endif
#endif
#if defined(__SANITIZE_ADDRESS__)
#define SHAREFORMER_TEST_ASAN 1
#endif

// Every heap allocation of the process (operator new, Eigen's aligned_malloc, OpenMP) goes through
// glibc's malloc family: interpose it. Sanitizers interpose it themselves, so the test skips there.
#if defined(__GLIBC__) && !defined(SHAREFORMER_TEST_ASAN)
#define SHAREFORMER_COUNTS_ALLOCATIONS 1
extern "C" {
// glibc's own implementations, under the reserved names glibc exports them by.
// NOLINTBEGIN(bugprone-reserved-identifier,readability-identifier-naming)
void* __libc_malloc(std::size_t);
void* __libc_calloc(std::size_t, std::size_t);
void* __libc_realloc(void*, std::size_t);
void* __libc_memalign(std::size_t, std::size_t);
// NOLINTEND(bugprone-reserved-identifier,readability-identifier-naming)
void* malloc(std::size_t n) {
  note();
  return __libc_malloc(n);
}
void* calloc(std::size_t count, std::size_t n) {
  note();
  return __libc_calloc(count, n);
}
void* realloc(void* p, std::size_t n) {
  note();
  return __libc_realloc(p, n);
}
int posix_memalign(void** p, std::size_t alignment, std::size_t n) {
  note();
  *p = __libc_memalign(alignment, n);
  return *p != nullptr ? 0 : 12;  // ENOMEM
}
void* aligned_alloc(std::size_t alignment, std::size_t n) {
  note();
  return __libc_memalign(alignment, n);
}
}
#endif

namespace sf = shareformer;
using sf::Index;

enum class Weights { Plain, Packed, Bf16Products };

// Allocations f makes: on every thread, and on threads other than the caller's.
struct Counted {
  long all = 0;
  long other_threads = 0;
};
template <typename F>
Counted count_allocations(F&& f) {
  t_test_thread = true;
  g_allocations = 0;
  g_other_thread_allocations = 0;
  g_counting = true;
  f();
  g_counting = false;
  t_test_thread = false;
  return {g_allocations.load(), g_other_thread_allocations.load()};
}

sf::BlockConfig small_config() {
  sf::BlockConfig c;
  c.d_model = 256;
  c.n_heads = 4;
  c.d_ff = 1024;
  return c;
}

template <typename Policy>
sf::Stack<Policy> random_stack(const sf::BlockConfig& c, Index layers, Weights weights) {
  sf::Stack<Policy> stack(c, layers);
  stack.randomize(1);
  if (weights == Weights::Packed) stack.pack_weights();
  if (weights == Weights::Bf16Products) stack.use_bf16_products();
  return stack;
}

template <typename Policy>
long allocations_of_second_forward(const sf::BlockConfig& c, const sf::Batch& batch, int threads,
                                   Weights weights = Weights::Plain) {
  const sf::Stack<Policy> stack = random_stack<Policy>(c, 4, weights);
  sf::RowMatrix<float> h = sf::testing::random_matrix<float>(batch.tokens(), c.d_model, 2);
  sf::Workspace<float> ws;
  stack.forward(h, batch, ws, threads);  // sizes the workspace
  return count_allocations([&] { stack.forward(h, batch, ws, threads); }).all;
}

TEST(Allocations, SteadyStateForwardAllocatesNothing) {
#if !defined(SHAREFORMER_COUNTS_ALLOCATIONS)
  GTEST_SKIP() << "allocation counting needs glibc without sanitizers";
#endif
  const sf::BlockConfig c = small_config();
  for (int threads : {1, 2}) {
    EXPECT_EQ(
        allocations_of_second_forward<sf::SharedAll>(c, sf::Batch::padded(64, {64, 30}), threads),
        0)
        << threads << " threads";
    EXPECT_EQ(allocations_of_second_forward<sf::Unshared>(c, sf::Batch::uniform(1, 16), threads), 0)
        << threads << " threads";
    EXPECT_EQ(allocations_of_second_forward<sf::Unshared>(c, sf::Batch::uniform(2, 16), threads,
                                                          Weights::Packed),
              0)
        << threads << " threads, packed weights";
    // Threading plans that give each thread its own sequences or rows (detail::threading_plan):
    // one workspace per thread inside ws, sized by the first forward.
    EXPECT_EQ(
        allocations_of_second_forward<sf::SharedAll>(
            c, sf::Batch::padded(sf::detail::group_min_tokens, {sf::detail::group_min_tokens, 7}),
            threads, Weights::Packed),
        0)
        << threads << " threads, groups of sequences";
    EXPECT_EQ(
        allocations_of_second_forward<sf::Unshared>(
            c, sf::Batch::uniform(1, 2 * sf::detail::share_min_rows + 3), threads, Weights::Packed),
        0)
        << threads << " threads, blocks of rows";
    // The rounded activations live in the workspace's GEMM scratch, sized by the first forward.
    EXPECT_EQ(allocations_of_second_forward<sf::SharedAll>(c, sf::Batch::uniform(2, 16), threads,
                                                           Weights::Bf16Products),
              0)
        << threads << " threads, bfloat16 products";
  }
}

// A forward whose threads each own a block of rows (ThreadPlan::Shares) waits for its team at
// barriers, so a thread that failed to allocate could not report it (detail::parallel_team): the
// first forward sizes every buffer on the calling thread before the team starts.
long other_thread_allocations_of_first_shares_forward(Weights weights) {
  const sf::BlockConfig c = small_config();
  const sf::Batch batch = sf::Batch::uniform(1, 2 * sf::detail::share_min_rows + 3);
  EXPECT_EQ(sf::detail::threading_plan(batch.batch(), batch.seq_len(), 2),
            sf::detail::ThreadPlan::Shares);
  const sf::Stack<sf::SharedAll> stack = random_stack<sf::SharedAll>(c, 2, weights);
  sf::RowMatrix<float> h = sf::testing::random_matrix<float>(batch.tokens(), c.d_model, 2);
  sf::Workspace<float> warm, ws;
  stack.forward(h, batch, warm, 2);  // starts the thread pool, which may allocate on its threads
  // A fresh workspace: the first forward of this shape.
  return count_allocations([&] { stack.forward(h, batch, ws, 2); }).other_threads;
}

TEST(Allocations, RowSharesSizeTheirScratchBeforeTheTeam) {
#if !defined(SHAREFORMER_COUNTS_ALLOCATIONS)
  GTEST_SKIP() << "allocation counting needs glibc without sanitizers";
#endif
  EXPECT_EQ(other_thread_allocations_of_first_shares_forward(Weights::Packed), 0)
      << "float weights";
  EXPECT_EQ(other_thread_allocations_of_first_shares_forward(Weights::Bf16Products), 0)
      << "bfloat16 products";
}

TEST(Allocations, TheCounterSeesAllocations) {
#if !defined(SHAREFORMER_COUNTS_ALLOCATIONS)
  GTEST_SKIP() << "allocation counting needs glibc without sanitizers";
#endif
  std::vector<int>* v = nullptr;
  Eigen::MatrixXf m;
  const Counted counted = count_allocations([&] {
    v = new std::vector<int>(100);
    m.resize(64, 64);  // Eigen's aligned_malloc
    std::thread([] {
      std::vector<int> w(10);
      EXPECT_EQ(w.size(), 10U);
    }).join();
  });
  delete v;
  EXPECT_GE(counted.all, 4);
  EXPECT_GE(counted.other_threads, 1);  // at least the vector on the other thread
  EXPECT_EQ(m.size(), 64 * 64);
}
