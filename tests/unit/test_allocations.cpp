// SPDX-License-Identifier: MIT
// A steady-state forward allocates nothing: global operator new is counted around a second forward
// with a kept Workspace.
#include "support/reference.hpp"

#include <shareformer/shareformer.hpp>

#include <gtest/gtest.h>

#include <atomic>
#include <cstdlib>
#include <new>

namespace {
std::atomic<long> g_allocations{0};
std::atomic<bool> g_counting{false};
[[maybe_unused]] void note() {
  if (g_counting.load(std::memory_order_relaxed)) g_allocations.fetch_add(1, std::memory_order_relaxed);
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

enum class Weights { Plain, Packed, Bf16Products };

template <typename Policy>
long allocations_of_second_forward(const sf::BlockConfig& c, const sf::Batch& batch, int threads,
                                    Weights weights = Weights::Plain) {
  sf::Stack<Policy> stack(c, 4);
  stack.randomize(1);
  if (weights == Weights::Packed) stack.pack_weights();
  if (weights == Weights::Bf16Products) stack.use_bf16_products();
  sf::RowMatrix<float> h = sf::testing::random_matrix<float>(batch.tokens(), c.d_model, 2);
  sf::Workspace<float> ws;
  stack.forward(h, batch, ws, threads);  // sizes the workspace
  g_allocations = 0;
  g_counting = true;
  stack.forward(h, batch, ws, threads);
  g_counting = false;
  return g_allocations.load();
}

TEST(Allocations, SteadyStateForwardAllocatesNothing) {
#if !defined(SHAREFORMER_COUNTS_ALLOCATIONS)
  GTEST_SKIP() << "allocation counting needs glibc without sanitizers";
#endif
  sf::BlockConfig c;
  c.d_model = 256;
  c.n_heads = 4;
  c.d_ff = 1024;
  for (int threads : {1, 2}) {
    EXPECT_EQ(allocations_of_second_forward<sf::SharedAll>(c, sf::Batch::padded(64, {64, 30}), threads), 0)
        << threads << " threads";
    EXPECT_EQ(allocations_of_second_forward<sf::Unshared>(c, sf::Batch::uniform(1, 16), threads), 0)
        << threads << " threads";
    EXPECT_EQ(allocations_of_second_forward<sf::Unshared>(c, sf::Batch::uniform(2, 16), threads,
                                                          Weights::Packed),
              0)
        << threads << " threads, packed weights";
    // Threading plans that give each thread its own sequences or rows (detail::threading_plan):
    // one workspace per thread inside ws, sized by the first forward.
    EXPECT_EQ(allocations_of_second_forward<sf::SharedAll>(
                  c, sf::Batch::padded(sf::detail::group_min_tokens, {sf::detail::group_min_tokens, 7}), threads,
                  Weights::Packed),
              0)
        << threads << " threads, groups of sequences";
    EXPECT_EQ(allocations_of_second_forward<sf::Unshared>(
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

TEST(Allocations, TheCounterSeesAllocations) {
#if !defined(SHAREFORMER_COUNTS_ALLOCATIONS)
  GTEST_SKIP() << "allocation counting needs glibc without sanitizers";
#endif
  g_allocations = 0;
  g_counting = true;
  auto* v = new std::vector<int>(100);
  Eigen::MatrixXf m(64, 64);  // Eigen's aligned_malloc
  g_counting = false;
  delete v;
  EXPECT_GE(g_allocations.load(), 3);
  EXPECT_EQ(m.size(), 64 * 64);
}
