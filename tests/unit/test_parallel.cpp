// SPDX-License-Identifier: MIT
// The parallel loops run every chunk, item and team member, and hand an exception thrown on any
// thread to the calling thread instead of ending the process.
#include <shareformer/shareformer.hpp>

#include <gtest/gtest.h>

#include <atomic>
#include <stdexcept>
#include <string>
#include <vector>

namespace sf = shareformer;
using sf::Index;

namespace {

// Calls f and returns the message of the std::runtime_error it throws ("" when none).
template <typename F>
std::string message_of(F&& f) {
  try {
    f();
  } catch (const std::runtime_error& e) {
    return e.what();
  }
  return "";
}

}  // namespace

TEST(Parallel, ChunksCoverTheRangeOnce) {
  for (int threads : {1, 2, 3}) {
    std::vector<std::atomic<int>> seen(37);
    sf::detail::parallel_chunks(37, 4, threads, [&](Index begin, Index end, int) {
      EXPECT_EQ(begin % 4, 0);
      for (Index i = begin; i < end; ++i) ++seen[static_cast<std::size_t>(i)];
    });
    for (const auto& s : seen) EXPECT_EQ(s.load(), 1) << threads << " threads";
  }
}

TEST(Parallel, ChunksRethrowOnTheCallingThreadAndRunTheOthers) {
  for (int threads : {1, 2, 3}) {
    std::atomic<int> ran{0};
    const std::string what = message_of([&] {
      sf::detail::parallel_chunks(30, 1, threads, [&](Index begin, Index, int t) {
        ++ran;
        if (begin == 0) throw std::runtime_error("chunk at 0, thread " + std::to_string(t));
      });
    });
    EXPECT_EQ(what, "chunk at 0, thread 0") << threads << " threads";
    EXPECT_EQ(ran.load(), threads) << "every chunk ran";
  }
}

TEST(Parallel, ItemsRethrowOnTheCallingThread) {
  std::atomic<int> ran{0};
  const std::string what = message_of([&] {
    sf::detail::parallel_items(6, 2, [&](Index item, int) {
      ++ran;
      if (item == 3) throw std::runtime_error("item 3");
    });
  });
  EXPECT_EQ(what, "item 3");
  EXPECT_EQ(ran.load(), 6);
}

TEST(Parallel, TeamRethrowsAfterTheTeamEnds) {
  std::atomic<int> ran{0};
  const std::string what = message_of([&] {
    sf::detail::parallel_team(2, [&](int t, int n) {
      sf::detail::barrier();
      ++ran;
      if (t == n - 1) throw std::runtime_error("last of " + std::to_string(n));
    });
  });
  EXPECT_TRUE(what == "last of 1" || what == "last of 2") << what;
  EXPECT_GE(ran.load(), 1);
}
