// SPDX-License-Identifier: MIT
// An allocator for large, long-lived buffers (packed weights) that asks Linux for transparent huge
// pages, so that streaming them does not walk the page tables every 4 KiB.
#pragma once

#include <Eigen/Core>
#include <cstddef>
#include <cstdint>
#include <limits>
#include <new>

#if defined(__linux__)
#include <sys/mman.h>
#endif

namespace shareformer {

/// Size (and alignment) of a transparent huge page on x86-64 and most AArch64 Linux systems.
inline constexpr std::size_t huge_page_bytes = std::size_t{2} << 20;

// AddressSanitizer (GCC's and Clang's spellings).
#if defined(__has_feature)
#if __has_feature(address_sanitizer)
#define SHAREFORMER_DETAIL_ASAN 1
#endif
#endif
#if defined(__SANITIZE_ADDRESS__)
#define SHAREFORMER_DETAIL_ASAN 1
#endif
#if defined(__linux__) && defined(MADV_HUGEPAGE) && !defined(SHAREFORMER_DETAIL_ASAN)
#define SHAREFORMER_DETAIL_HUGE_PAGES 1
#endif

/// Whether this build asks for huge pages: on Linux with madvise(MADV_HUGEPAGE), and not under
/// AddressSanitizer, which cannot see into memory mapped directly and would then miss a read past
/// the end of a packed matrix.
#if defined(SHAREFORMER_DETAIL_HUGE_PAGES)
inline constexpr bool huge_pages_supported = true;
#else
inline constexpr bool huge_pages_supported = false;
#endif

/// A standard allocator for large, long-lived buffers. An allocation of at least huge_page_bytes is
/// mapped directly from the kernel (mmap), aligned to huge_page_bytes, and its whole huge pages are
/// advised to be transparent huge pages (madvise(MADV_HUGEPAGE): honoured when
/// /sys/kernel/mm/transparent_hugepage/enabled is "madvise", the default of Debian and most
/// distributions, or "always"); a partial huge page at the end stays in 4 KiB pages, so no memory
/// is used beyond what was asked for. Fresh pages from mmap matter: memory that malloc hands out
/// again has usually been touched already, in 4 KiB pages that the advice does not change. The
/// advice is only advice: where the kernel declines it the memory is ordinary. Smaller allocations,
/// and every allocation off Linux or under AddressSanitizer, come from Eigen's aligned malloc.
/// Why: packed weights streamed from memory or L3 touch a new 4 KiB page every 64 cache lines (an
/// unshared bert-base stack reads 83,000 pages per forward, far more than the TLBs hold).
/// Measured (Intel Xeon, 2 vCPUs, 2026-11-28), in one process that alternates between the same
/// packed weights in huge and in 4 KiB pages: 768 x 3072 products 1.02-1.19x faster at 16 tokens,
/// 1.02-1.12x at 32, 1.01-1.02x at 128; whole bert-base forwards 1.02-1.11x at 16 tokens and
/// 0.98-1.06x at 32-128 (two runs, 21 of 24 faster). benchmarks/bench_ops GemmStream route 3
/// against route 5 repeats the product measurement.
template <typename T>
class HugePageAllocator {
 public:
  using value_type = T;

  HugePageAllocator() = default;
  template <typename U>
  HugePageAllocator(const HugePageAllocator<U>& /*other*/) noexcept {}  // like std::allocator's

  [[nodiscard]] T* allocate(std::size_t n) {
    if (n > (std::numeric_limits<std::size_t>::max() - 2 * huge_page_bytes) / sizeof(T))
      throw std::bad_array_new_length();
    const std::size_t bytes = n * sizeof(T);
    if (huge(bytes)) return static_cast<T*>(map_huge(bytes));
    return static_cast<T*>(Eigen::internal::aligned_malloc(bytes));
  }

  void deallocate(T* p, std::size_t n) noexcept {
    const std::size_t bytes = n * sizeof(T);
    if (huge(bytes))
      unmap_huge(p, bytes);
    else
      Eigen::internal::aligned_free(p);
  }

  friend bool operator==(const HugePageAllocator& /*a*/, const HugePageAllocator& /*b*/) noexcept {
    return true;
  }
  friend bool operator!=(const HugePageAllocator& /*a*/, const HugePageAllocator& /*b*/) noexcept {
    return false;
  }

 private:
  static constexpr std::size_t small_page_bytes = 4096;  // the unit of mmap and munmap lengths

  static constexpr bool huge(std::size_t bytes) {
    return huge_pages_supported && bytes >= huge_page_bytes;
  }
  static constexpr std::size_t round_up(std::size_t bytes, std::size_t unit) {
    return (bytes + unit - 1) / unit * unit;
  }

#if defined(SHAREFORMER_DETAIL_HUGE_PAGES)
  /// Maps bytes + one huge page, then unmaps what lies before the first huge page boundary and
  /// after the buffer.
  static void* map_huge(std::size_t bytes) {
    const std::size_t length = round_up(bytes, small_page_bytes);
    void* raw = mmap(nullptr, length + huge_page_bytes, PROT_READ | PROT_WRITE,
                     MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (raw == MAP_FAILED) throw std::bad_alloc();
    auto* const first = static_cast<char*>(raw);
    const auto at = reinterpret_cast<std::uintptr_t>(first);
    char* const aligned = first + (round_up(at, huge_page_bytes) - at);
    if (aligned != first) munmap(first, static_cast<std::size_t>(aligned - first));
    char* const end = first + length + huge_page_bytes;
    if (aligned + length != end)
      munmap(aligned + length, static_cast<std::size_t>(end - aligned - length));
    // Advice only: if the kernel refuses it (transparent huge pages off), the pages are 4 KiB.
    (void)madvise(aligned, bytes / huge_page_bytes * huge_page_bytes, MADV_HUGEPAGE);
    return aligned;
  }
  static void unmap_huge(void* p, std::size_t bytes) noexcept {
    munmap(p, round_up(bytes, small_page_bytes));
  }
#else
  // Never called: huge() is false without huge page support.
  static void* map_huge(std::size_t /*bytes*/) { throw std::bad_alloc(); }
  static void unmap_huge(void* /*p*/, std::size_t /*bytes*/) noexcept {}
#endif
};

}  // namespace shareformer
