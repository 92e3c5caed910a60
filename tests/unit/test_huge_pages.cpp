// SPDX-License-Identifier: MIT
// HugePageAllocator: alignment, contents, and (on Linux) that the kernel was asked for transparent
// huge pages on exactly the whole huge pages of a large allocation.
#include <shareformer/shareformer.hpp>

#include <gtest/gtest.h>

#include <cstdint>
#include <fstream>
#include <numeric>
#include <sstream>
#include <string>
#include <vector>

namespace sf = shareformer;

namespace {

std::uintptr_t address(const void* p) { return reinterpret_cast<std::uintptr_t>(p); }

/// The mode in /sys/kernel/mm/transparent_hugepage/enabled ("always", "madvise", "never"), or ""
/// where the file is missing.
std::string thp_mode() {
  std::ifstream in("/sys/kernel/mm/transparent_hugepage/enabled");
  std::string line;
  if (!std::getline(in, line)) return "";
  const auto open = line.find('['), close = line.find(']');
  return open == std::string::npos || close == std::string::npos
             ? ""
             : line.substr(open + 1, close - open - 1);
}

/// The value of `field` (e.g. "THPeligible") in /proc/self/smaps for the mapping that contains
/// address `at`, or -1 where there is none.
long smaps_field(std::uintptr_t at, const std::string& field) {
  std::ifstream in("/proc/self/smaps");
  std::string line;
  bool inside = false;
  while (std::getline(in, line)) {
    unsigned long long begin = 0, end = 0;
    char dash = 0;
    std::istringstream head(line);
    if (head >> std::hex >> begin >> dash >> end && dash == '-' &&
        line.find(':') > line.find(' ')) {
      inside = begin <= at && at < end;
      continue;
    }
    if (inside && line.rfind(field + ":", 0) == 0) return std::stol(line.substr(field.size() + 1));
  }
  return -1;
}

TEST(HugePageAllocator, SmallAllocationsAreOrdinaryAndAligned) {
  std::vector<float, sf::HugePageAllocator<float>> v(1000);
  std::iota(v.begin(), v.end(), 0.0F);
  EXPECT_EQ(address(v.data()) % EIGEN_MAX_ALIGN_BYTES, 0U);
  EXPECT_EQ(v[999], 999.0F);
  const std::vector<float, sf::HugePageAllocator<float>> copy = v;
  EXPECT_EQ(copy, v);
}

TEST(HugePageAllocator, LargeAllocationsStartOnAHugePage) {
  // 2.5 huge pages of floats plus one: the advice covers the first two whole huge pages only.
  const std::size_t n = 5 * sf::huge_page_bytes / 2 / sizeof(float) + 1;
  std::vector<float, sf::HugePageAllocator<float>> v(n, 1.0F);
  v.back() = 2.0F;
  EXPECT_EQ(std::accumulate(v.begin(), v.end(), 0.0), static_cast<double>(n) + 1.0);
  if (!sf::huge_pages_supported) GTEST_SKIP() << "this build cannot ask for huge pages";
  EXPECT_EQ(address(v.data()) % sf::huge_page_bytes, 0U);
}

TEST(HugePageAllocator, AsksLinuxForHugePagesOnWholeHugePagesOnly) {
  if (!sf::huge_pages_supported) GTEST_SKIP() << "this build cannot ask for huge pages";
  const std::string mode = thp_mode();
  // Under "always" every mapping is eligible and under "never" none: only "madvise" shows the
  // advice.
  if (mode != "madvise")
    GTEST_SKIP() << "transparent huge pages are '" << mode << "', not 'madvise'";
  const std::size_t n = 5 * sf::huge_page_bytes / 2 / sizeof(float);
  const std::vector<float, sf::HugePageAllocator<float>> v(n, 1.0F);
  const std::uintptr_t first = address(v.data());
  EXPECT_EQ(smaps_field(first, "THPeligible"), 1) << "the first huge page was not advised";
  EXPECT_EQ(smaps_field(first + sf::huge_page_bytes, "THPeligible"), 1) << "the second huge page";
  EXPECT_EQ(smaps_field(first + 2 * sf::huge_page_bytes, "THPeligible"), 0)
      << "the partial huge page at the end was advised";
  // An ordinary allocation of the same size is not advised: the check above can tell them apart.
  const std::vector<float, Eigen::aligned_allocator<float>> plain(n, 1.0F);
  EXPECT_EQ(smaps_field(address(plain.data()) + sf::huge_page_bytes, "THPeligible"), 0);
}

TEST(HugePageAllocator, PackedWeightsUseIt) {
  const sf::RowMatrix<float> m = sf::RowMatrix<float>::Random(768, 768);  // 2.25 MiB
  const sf::ops::PackedMatrix<float> packed(m);
  EXPECT_EQ(packed(5, 700), m(5, 700));
  if (!sf::huge_pages_supported) GTEST_SKIP() << "this build cannot ask for huge pages";
  EXPECT_EQ(address(packed.data()) % sf::huge_page_bytes, 0U);
}

}  // namespace
