// SPDX-License-Identifier: MIT
// Packed weights (ops::PackedMatrix): the layout, the product that streams it against naive loops
// and bit for bit against the same kernel on the unpacked matrix, and Linear / Stack / Encoder
// with pack_weights(): the same results, the copies dropped when the weights change.
#include "support/reference.hpp"

#include <shareformer/shareformer.hpp>

#include <gtest/gtest.h>

#include <algorithm>
#include <atomic>
#include <cmath>
#include <limits>
#include <random>
#include <string>
#include <tuple>
#include <utility>
#include <vector>

namespace sf = shareformer;
namespace naive = shareformer::testing::naive;
using sf::Index;
using sf::RowMatrix;
using sf::testing::max_abs_diff;
using sf::testing::random_matrix;

namespace {

template <typename T>
class Packed : public sf::testing::ScalarTest<T> {};
TYPED_TEST_SUITE(Packed, sf::testing::Scalars);

// Shapes that reach every panel kind: full panels, panels of two packets and of one, and fewer
// columns than a packet (for every SIMD width from SSE's 4 floats to AVX-512's 16; e.g. 129
// columns of AVX-512 floats: 3, 3 and 2 packets, then 1 column), rows below, at and above a tile.
const std::vector<std::tuple<Index, Index, Index>> shapes = {
    {1, 7, 3},    {8, 64, 48},   {17, 300, 53}, {9, 1, 129}, {5, 768, 100},
    {40, 33, 97}, {150, 40, 53}, {3, 0, 20},    {133, 0, 7}};

// Packets in a full panel: 3, unless the build sets another register tile
// (SHAREFORMER_SMALL_GEMM_PACKETS; tests/CMakeLists.txt builds these tests with 4 and 2 too).
constexpr Index full = sf::ops::detail::small_gemm_packets;

// Width of the panel at column j of `cols`, from the documented layout: full panels while they
// fit, then one of the 2 or 1 whole packets left, then the rest.
Index documented_width(Index j, Index cols, Index lanes) {
  const Index left = cols - j;
  if (left >= full * lanes) return full * lanes;
  if (left >= 2 * lanes) return 2 * lanes;
  return left >= lanes ? lanes : left;
}

// Column counts whose layouts hold each panel kind: 1 column; one full panel; a full panel and a
// column; full, single-packet and partial panels; full, two-packet and partial panels; two
// packets alone; two full panels and a partial one.
template <typename T>
std::vector<Index> layout_cols() {
  const Index lanes = sf::ops::detail::packet_size<T>;
  return {1,
          full * lanes,
          full * lanes + 1,
          (full + 1) * lanes + 3,
          (full + 2) * lanes + 3,
          2 * lanes,
          (2 * full + 1) * lanes - 1};
}

}  // namespace

TYPED_TEST(Packed, LayoutIsPanelByPanel) {
  using T = TypeParam;
  // Written from the documented layout (documented_width); each panel's rows one after the other.
  const Index lanes = sf::ops::detail::packet_size<T>;
  for (Index cols : layout_cols<T>()) {
    const RowMatrix<T> m = random_matrix<T>(5, cols, 1);
    const sf::ops::PackedMatrix<T> packed(m);
    ASSERT_EQ(packed.rows(), 5);
    ASSERT_EQ(packed.cols(), cols);
    ASSERT_EQ(packed.bytes(), sizeof(T) * static_cast<std::size_t>(m.size()));
    const T* data = packed.data();
    Index j = 0;
    while (j < cols) {
      const Index w = documented_width(j, cols, lanes);
      for (Index p = 0; p < 5; ++p)
        for (Index c = 0; c < w; ++c) {
          ASSERT_EQ(*data++, m(p, j + c)) << "column " << j + c << " of " << cols;
          ASSERT_EQ(packed(p, j + c), m(p, j + c));
        }
      j += w;
    }
  }
}

TEST(PackedBf16, LayoutKeepsTheRowsOfWholePacketsInPairs) {
  // Written from the documented layout: the float layout's panels, each from element j * rows;
  // in panels of whole packets rows (2q, 2q + 1) go column by column, two elements per column,
  // an odd last row alone after them (in AVX-512 builds; in others, and in narrower panels, row
  // after row).
  const Index lanes = sf::ops::detail::packet_size<float>;
  for (Index rows : {Index(1), Index(2), Index(5), Index(6)})
    for (Index cols : layout_cols<float>()) {
      const RowMatrix<float> m = random_matrix<float>(rows, cols, 2);
      const sf::ops::PackedMatrix<float, Eigen::bfloat16> packed(m);
      ASSERT_EQ(packed.bytes(), 2 * static_cast<std::size_t>(m.size()));
      const Eigen::bfloat16* data = packed.data();
      const auto expect = [&](Index p, Index c) {
        ASSERT_EQ(float(*data++), float(Eigen::bfloat16(m(p, c))))
            << "element (" << p << ", " << c << ") of " << rows << " x " << cols;
        ASSERT_EQ(float(packed(p, c)), float(Eigen::bfloat16(m(p, c))));
      };
      Index j = 0;
      while (j < cols) {
        const Index w = documented_width(j, cols, lanes);
        ASSERT_EQ(data, packed.data() + j * rows);
        const Index paired = w >= lanes && sf::ops::detail::bf16_row_pairs ? rows - rows % 2 : 0;
        for (Index p = 0; p < paired; p += 2)
          for (Index c = 0; c < w; ++c) {
            expect(p, j + c);
            expect(p + 1, j + c);
          }
        for (Index p = paired; p < rows; ++p)
          for (Index c = 0; c < w; ++c) expect(p, j + c);
        j += w;
      }
    }
}

TEST(PackedPrefetch, RowTilesShareTheNextBlockOutExactly) {
  // Every cache line of the block, each by exactly one tile, in order, in shares that differ by
  // at most one line; into L1 with at least prefetch_skip_first_min_tiles tiles, the first tile
  // takes none and the others share it all.
  alignas(64) static const char block[64 * 100] = {};
  const Index skip_from = sf::ops::detail::prefetch_skip_first_min_tiles;
  for (bool l1 : {false, true})
    for (Index bytes : {Index(0), Index(64), Index(64 * 7), Index(64 * 100), Index(64 * 100 - 5)})
      for (Index tiles = 1; tiles <= 9; ++tiles) {
        const bool skip = l1 && tiles >= skip_from;
        const Index sharers = skip ? tiles - 1 : tiles;
        const char* expected = block;
        Index total = 0;
        for (Index t = 0; t < tiles; ++t) {
          const sf::ops::detail::PrefetchLines share =
              sf::ops::detail::prefetch_share({block, bytes, l1}, t, tiles);
          const std::string where = std::to_string(bytes) + " bytes, tile " + std::to_string(t) +
                                    " of " + std::to_string(tiles) + (l1 ? ", L1" : ", L2");
          EXPECT_EQ(static_cast<const char*>(share.first), expected) << where;
          if (skip && t == 0) {
            EXPECT_EQ(share.lines, 0) << where << ": the first tile takes no share";
          } else {
            EXPECT_GE(share.lines, bytes / 64 / sharers) << where;
            EXPECT_LE(share.lines, bytes / 64 / sharers + 1) << where;
          }
          EXPECT_EQ(share.l1, l1) << where << ": the block's level";
          expected += 64 * share.lines;
          total += share.lines;
        }
        EXPECT_EQ(total, bytes / 64) << bytes << " bytes, " << tiles << " tiles";
      }
  EXPECT_EQ(sf::ops::detail::prefetch_share({nullptr, 6400, true}, 0, 1).lines, 0);
}

TEST(PackedPrefetch, FirstTileLeavesAnL1BlockToTheOthersFromTheLimitOn) {
  // 6400 bytes = 100 lines. One tile under the limit, every tile has a share; at the limit, into
  // L1, the first has none and the second (of limit - 1 sharers) 100 / (limit - 1) lines; into
  // L2 the first keeps its share.
  using sf::ops::detail::prefetch_share;
  alignas(64) static const char block[64 * 100] = {};
  const Index n = sf::ops::detail::prefetch_skip_first_min_tiles;
  ASSERT_GE(n, 2) << "the rule needs a tile besides the first";
  EXPECT_EQ(prefetch_share({block, 6400, true}, 0, n - 1).lines, 100 / (n - 1));
  EXPECT_EQ(prefetch_share({block, 6400, true}, 0, n).lines, 0);
  EXPECT_EQ(prefetch_share({block, 6400, true}, 1, n).lines, 100 / (n - 1));
  EXPECT_EQ(prefetch_share({block, 6400, true}, 1, n).first, static_cast<const void*>(block));
  EXPECT_EQ(prefetch_share({block, 6400, false}, 0, n).lines, 100 / n);
}

TEST(PackedPrefetch, IntoL1WhilePassesHaveAtMostTheLimitsTiles) {
  using sf::ops::detail::prefetch_into_l1;
  const Index limit = sf::ops::detail::prefetch_l1_max_tiles();
  for (Index rows : {Index(1), Index(4), Index(8)}) {
    // limit tiles: the last of them full, then one row over.
    EXPECT_EQ(prefetch_into_l1(limit * rows, rows), true) << limit << " tiles of " << rows;
    EXPECT_EQ(prefetch_into_l1(limit * rows + 1, rows), false) << limit << " tiles and a row";
    if (limit > 0) {
      EXPECT_EQ(prefetch_into_l1((limit - 1) * rows + 1, rows), true) << rows;
    }
  }
}

TEST(PackedRowBlocks, RowsRunWholeWhileTheirActivationsFitTheBudget) {
  using sf::ops::detail::packed_gemm_block_rows;
  const Index block = sf::ops::detail::packed_gemm_rows;
  EXPECT_EQ(packed_gemm_block_rows<float>(100, 10, 4000), 100) << "4000 bytes in 4000";
  EXPECT_EQ(packed_gemm_block_rows<float>(100, 10, 3999), block);
  EXPECT_EQ(packed_gemm_block_rows<double>(100, 10, 4000), block) << "8000 bytes in 4000";
  EXPECT_EQ(packed_gemm_block_rows<float>(0, 768, 4000), 1) << "no rows: one empty block";
  EXPECT_EQ(packed_gemm_block_rows<float>(64, 10, 1), block) << "a budget below one row";
}

TEST(PackedRowBlocks, BudgetIsHalfTheL2OnIntelAndEightL2sOnAmd) {
  using sf::ops::detail::packed_gemm_block_rows;
  using sf::ops::detail::packed_gemm_whole_bytes_for;
  const Index block = sf::ops::detail::packed_gemm_rows;
  const Index intel = packed_gemm_whole_bytes_for(2 << 20, false);
  const Index amd = packed_gemm_whole_bytes_for(1 << 20, true);
  EXPECT_EQ(intel, 1 << 20);
  EXPECT_EQ(amd, 8 << 20);
  EXPECT_EQ(packed_gemm_whole_bytes_for(1 << 20, false), 1 << 19) << "not AMD: half the L2";
  // Intel Xeon, 2 MiB L2: 256 rows of depth 768 (768 KiB) whole, 512 (1.5 MiB) in blocks.
  EXPECT_EQ(packed_gemm_block_rows<float>(256, 768, intel), 256);
  EXPECT_EQ(packed_gemm_block_rows<float>(512, 768, intel), block);
  EXPECT_EQ(packed_gemm_block_rows<float>(128, 3072, intel), block) << "1.5 MiB";
  // AMD EPYC, 1 MiB L2: 1024 rows of depth 768 (3 MiB) whole, of depth 3072 (12 MiB) in blocks.
  EXPECT_EQ(packed_gemm_block_rows<float>(1024, 768, amd), 1024);
  EXPECT_EQ(packed_gemm_block_rows<float>(682, 3072, amd), 682) << "just under 8 MiB";
  EXPECT_EQ(packed_gemm_block_rows<float>(683, 3072, amd), block) << "just over 8 MiB";
  EXPECT_EQ(packed_gemm_block_rows<float>(1024, 3072, amd), block);
  EXPECT_GT(sf::ops::detail::packed_gemm_whole_bytes(), 0);
}

TYPED_TEST(Packed, EachPassPrefetchesTheBlockTheNextPassReads) {
  using T = TypeParam;
  const Index lanes = sf::ops::detail::packet_size<T>;
  const Index kc = sf::ops::detail::packed_gemm_kc;
  struct Block {
    Index panel, depth;  // first column and first row of the block
    const T* first;
    Index bytes;
  };
  // Two full panels, one of one or of two packets, and fewer columns than a packet.
  for (Index packets : {Index(1), Index(2)}) {
    for (Index k : {Index(1), Index(5), kc, kc + 32, 2 * kc + 64}) {
      const Index cols = 2 * full * lanes + packets * lanes + (lanes - 1);
      const sf::ops::PackedMatrix<T> packed(random_matrix<T>(k, cols, 6));
      // The passes in the order packed_gemm makes them, from the documented layout: panel by panel
      // (each panel's rows contiguous from data() + j * k), within a panel kc rows at a time.
      std::vector<Block> order;
      for (Index j = 0; j < cols;) {
        const Index w = documented_width(j, cols, lanes);
        for (Index k0 = 0; k0 < k; k0 += kc)
          order.push_back(
              {j, k0, packed.data() + j * k + k0 * w, std::min(kc, k - k0) * w * Index{sizeof(T)}});
        j += w;
      }
      // Ranges of columns a thread may take: whole panels.
      for (const auto& [begin, end] :
           std::vector<std::pair<Index, Index>>{{0, cols},
                                                {0, full * lanes},
                                                {full * lanes, cols},
                                                {2 * full * lanes, (2 * full + packets) * lanes}})
        for (std::size_t b = 0; b < order.size(); ++b) {
          const Index w = documented_width(order[b].panel, cols, lanes);
          if (order[b].panel < begin || order[b].panel >= end || w < lanes) continue;
          const sf::ops::detail::NextBlock next = sf::ops::detail::next_packed_block<T>(
              packed.data(), k, cols, order[b].panel, order[b].depth, end);
          const std::string where = "k " + std::to_string(k) + ", " + std::to_string(cols) +
                                    " columns, range [" + std::to_string(begin) + ", " +
                                    std::to_string(end) + "), block " + std::to_string(b);
          const bool following = b + 1 < order.size() && order[b + 1].panel < end;
          const Block& after = order[following ? b + 1 : b];
          sf::testing::expect_next_block(next, following, after.first, after.bytes, where);
        }
    }
  }
}

TYPED_TEST(Packed, GemmMatchesNaiveAndTheUnpackedKernelBitForBit) {
  using T = TypeParam;
  for (const auto& [m, k, n] : shapes) {
    const RowMatrix<T> big_a = random_matrix<T>(m, k + 3, 2);
    const auto a = big_a.middleCols(2, k);
    const RowMatrix<T> b = random_matrix<T>(k, n, 3);
    const RowMatrix<T> c0 = random_matrix<T>(m, n + 5, 4);
    const sf::ops::PackedMatrix<T> packed(b);
    const naive::M expected =
        naive::linear(a.template cast<double>(), b.template cast<double>(), naive::M::Zero(1, n)) +
        c0.leftCols(n).template cast<double>();
    for (int threads : {1, 2, 3}) {
      sf::ops::GemmScratch<T> scratch;
      RowMatrix<T> c = c0;
      sf::ops::gemm_accumulate<T>(a, packed, c.leftCols(n), threads, scratch);
      EXPECT_LT(max_abs_diff(c.leftCols(n), expected), this->tol() * std::sqrt(double(k) + 1))
          << m << "x" << k << "x" << n << " threads " << threads;
      EXPECT_EQ(c.rightCols(5), c0.rightCols(5)) << "wrote outside the view";
      // The unpacked kernel adds the same products in the same order.
      RowMatrix<T> unpacked = c0;
      sf::ops::detail::gemm_small_path<T>(
          a, b, sf::ops::GemmStart<T>{unpacked.data(), unpacked.outerStride(), nullptr},
          unpacked.leftCols(n), threads, sf::ops::NoEpilogue{});
      EXPECT_EQ(c, unpacked) << m << "x" << k << "x" << n << " threads " << threads;
    }
  }
}

TYPED_TEST(Packed, EpilogueSeesEveryElementOnceWhenItIsFinal) {
  using T = TypeParam;
  const Index k = 70, n = 3 * 16 * 2 + 16 + 5;  // every panel kind for SSE to AVX-512
  // Rows in one block; in test_packed_blocked (4 KiB budget), whole blocks of rows and a partial
  // one.
  for (Index m : {Index(7), 2 * sf::ops::detail::packed_gemm_rows + 5}) {
    const Index block = sf::ops::detail::packed_gemm_block_rows<T>(m, k);
#if SHAREFORMER_PACKED_GEMM_WHOLE_BYTES > 0
    EXPECT_EQ(block, m == 7 ? m : sf::ops::detail::packed_gemm_rows) << m << " rows";
#endif
    const RowMatrix<T> a = random_matrix<T>(m, k, 5), b = random_matrix<T>(k, n, 6);
    const sf::ops::PackedMatrix<T> packed(b);
    const naive::M product =
        naive::linear(a.template cast<double>(), b.template cast<double>(), naive::M::Zero(1, n));
    for (int threads : {1, 2}) {
      RowMatrix<T> c = RowMatrix<T>::Zero(m, n);
      Eigen::MatrixXi seen = Eigen::MatrixXi::Zero(m, n);
      std::atomic<bool> complete{true};
      std::atomic<Index> wrong_block{-1};
      sf::ops::GemmScratch<T> scratch;
      sf::ops::gemm_accumulate<T>(
          a, packed, c, threads, scratch, [&](Index row, Index rows, Index col, Index cols) {
            // The block must already hold its final values.
            for (Index i = row; i < row + rows; ++i)
              for (Index j = col; j < col + cols; ++j)
                if (std::abs(double(c(i, j)) - product(i, j)) > this->tol() * 10) complete = false;
            // Blocks of `block` rows from row 0, the last one partial.
            if (row % block != 0 || rows != std::min(block, m - row)) wrong_block = row;
            seen.block(row, col, rows, cols).array() += 1;
          });
      const std::string where =
          std::to_string(m) + " rows, " + std::to_string(threads) + " threads";
      EXPECT_TRUE(complete) << "an epilogue ran before its block was final: " << where;
      EXPECT_EQ(wrong_block, -1) << "a block of rows other than packed_gemm_block_rows: " << where;
      EXPECT_TRUE((seen.array() == 1).all()) << "an element seen other than once: " << where;
    }
  }
}

// gemm_into: c = start + a b, start = (zero | another matrix | c itself) + (bias | nothing),
// on every route (row-major weights, packed, and above small_gemm_max_rows the blocked path),
// depths over one pass of either kernel (256 row-major, 768 packed), and k = 0. c starts as NaN
// wherever the start is not c itself: an element the product reads before writing would show.
TYPED_TEST(Packed, GemmIntoStartsFromZeroBiasOrAResidual) {
  using T = TypeParam;
  using Start = sf::ops::GemmStart<T>;
  const T nan = std::numeric_limits<T>::quiet_NaN();
  std::vector<std::tuple<Index, Index, Index>> cases = shapes;
  cases.emplace_back(9, 800, 37);
  cases.emplace_back(3, 300, 2);
  for (const auto& [m, k, n] : cases) {
    const RowMatrix<T> a = random_matrix<T>(m, k, 21);
    const RowMatrix<T> b = random_matrix<T>(k, n, 22);
    const RowMatrix<T> residual_store = random_matrix<T>(m, n + 4, 23);
    const auto residual = residual_store.leftCols(n);  // strided: ld = n + 4
    const sf::RowVector<T> bias = random_matrix<T>(1, n, 24);
    const sf::ops::PackedMatrix<T> packed(b);
    const naive::M product =
        naive::linear(a.template cast<double>(), b.template cast<double>(), naive::M::Zero(1, n));
    for (int kind = 0; kind < 5; ++kind) {
      const bool with_bias = kind % 2 == 1;
      // kinds: 0 zero, 1 bias, 2 residual, 3 residual + bias, 4 c itself + bias
      naive::M expected = product;
      if (with_bias || kind == 4) expected.rowwise() += bias.template cast<double>();
      if (kind >= 2) expected += residual.template cast<double>();
      for (int threads : {1, 2}) {
        for (int route = 0; route < 2; ++route) {
          RowMatrix<T> c_store = RowMatrix<T>::Constant(m, n + 3, nan);
          auto c = c_store.leftCols(n);
          if (kind == 4) c = residual;
          Start start{nullptr, 0, with_bias || kind == 4 ? bias.data() : nullptr};
          if (kind == 2 || kind == 3)
            start = Start{residual.data(), residual.outerStride(), start.bias};
          if (kind == 4) start.c0 = c.data(), start.ld = c.outerStride();
          sf::ops::GemmScratch<T> scratch;
          if (route == 0)
            sf::ops::gemm_into<T>(a, b, start, c, threads, scratch);
          else
            sf::ops::gemm_into<T>(a, packed, start, c, threads, scratch);
          const std::string where = std::to_string(m) + "x" + std::to_string(k) + "x" +
                                    std::to_string(n) + " start kind " + std::to_string(kind) +
                                    " route " + std::to_string(route) + " threads " +
                                    std::to_string(threads);
          EXPECT_LT(max_abs_diff(c, expected), this->tol() * std::sqrt(double(k) + 1)) << where;
          EXPECT_TRUE(c_store.rightCols(3).array().isNaN().all()) << "wrote outside c: " << where;
          // The start folded into the product equals the start written first, then accumulated
          // onto: the same operations in the same order.
          RowMatrix<T> two_pass = RowMatrix<T>::Zero(m, n);
          if (kind >= 2) two_pass = residual;
          if (start.bias != nullptr) two_pass.rowwise() += bias;
          if (route == 0)
            sf::ops::gemm_accumulate<T>(a, b, two_pass, threads, scratch);
          else
            sf::ops::gemm_accumulate<T>(a, packed, two_pass, threads, scratch);
          EXPECT_EQ(RowMatrix<T>(c), two_pass) << where;
        }
      }
    }
  }
}

TEST(PackedBf16, GemmEqualsFloatPackedGemmOnTheSameValues) {
  // Also deeper than one pass (packed_gemm_kc rows), with an odd last pass: its last row is the
  // one row a bfloat16 panel keeps unpaired.
  auto deep = shapes;
  for (Index k : {sf::ops::detail::packed_gemm_kc + 33, 2 * sf::ops::detail::packed_gemm_kc + 1})
    deep.emplace_back(9, k, 50);
  for (const auto& [m, k, n] : deep) {
    const RowMatrix<float> a = random_matrix<float>(m, k, 7);
    // Values a bfloat16 holds exactly: the two packings then hold the same numbers.
    const RowMatrix<float> b =
        random_matrix<float>(k, n, 8).unaryExpr([](float x) { return float(Eigen::bfloat16(x)); });
    const RowMatrix<float> c0 = random_matrix<float>(m, n, 9);
    const sf::ops::PackedMatrix<float, Eigen::bfloat16> half(b);
    const sf::ops::PackedMatrix<float> full(b);
    for (int threads : {1, 2}) {
      sf::ops::GemmScratch<float> scratch;
      RowMatrix<float> from_half = c0, from_full = c0;
      sf::ops::gemm_accumulate<float>(a, half, from_half, threads, scratch);
      sf::ops::gemm_accumulate<float>(a, full, from_full, threads, scratch);
      EXPECT_EQ(from_half, from_full) << m << "x" << k << "x" << n;
      const naive::M expected =
          naive::linear(a.cast<double>(), b.cast<double>(), naive::M::Zero(1, n)) +
          c0.cast<double>();
      EXPECT_LT(max_abs_diff(from_half, expected), 2e-5 * std::sqrt(double(k) + 1));
    }
  }
}

TEST(PackedLinear, PacksAndDropsTheCopyWhenTheWeightChanges) {
  sf::Linear<float> linear(37, 53);
  std::mt19937_64 rng(3);
  linear.randomize(rng, 0.5, 0.5);
  const sf::Linear<float> plain = linear;
  EXPECT_FALSE(linear.has_packed_weights());
  EXPECT_EQ(linear.packed_bytes(), 0u);
  linear.pack_weights();
  EXPECT_TRUE(linear.has_packed_weights());
  EXPECT_EQ(linear.packed_bytes(), sizeof(float) * 37u * 53u);

  const RowMatrix<float> x = random_matrix<float>(6, 37, 4);
  RowMatrix<float> y(6, 53), want(6, 53);
  linear.forward(x, y, 2);
  plain.forward(x, want, 2);
  EXPECT_EQ(y, want);
  // Activation fused into the packed product's epilogue, too.
  sf::ops::GemmScratch<float> scratch;
  linear.forward_activate(x, sf::Activation::GeluTanh, y, 1, scratch);
  plain.forward_activate(x, sf::Activation::GeluTanh, want, 1, scratch);
  EXPECT_EQ(y, want);

  linear.weight()(2, 50) = 4.0f;  // mutable access: a packed copy would be stale
  EXPECT_FALSE(linear.has_packed_weights());
  naive::M w = plain.weight().cast<double>();
  w(2, 50) = 4.0;
  linear.forward(x, y, 1);
  EXPECT_LT(max_abs_diff(y, naive::linear(x.cast<double>(), w, plain.bias().cast<double>())), 1e-5);

  linear.pack_weights();
  linear.randomize(rng, 0.5, 0.5);  // new weights: the copy goes too
  EXPECT_FALSE(linear.has_packed_weights());
  linear.forward(x, y, 1);
  EXPECT_LT(max_abs_diff(y, naive::linear(x.cast<double>(), linear.weight().cast<double>(),
                                          linear.bias().cast<double>())),
            1e-5);
}

TEST(PackedLinear, ForwardResidualAddsOntoAnotherMatrixOrOntoY) {
  sf::Linear<float> linear(37, 53);
  std::mt19937_64 rng(8);
  linear.randomize(rng, 0.5, 0.5);
  const RowMatrix<float> x = random_matrix<float>(6, 37, 9);
  const RowMatrix<float> residual = random_matrix<float>(6, 53, 10);
  const naive::M expected = naive::linear(x.cast<double>(), linear.weight().cast<double>(),
                                          linear.bias().cast<double>()) +
                            residual.cast<double>();
  sf::ops::GemmScratch<float> scratch;
  for (bool packed : {false, true}) {
    if (packed) linear.pack_weights();
    RowMatrix<float> y = RowMatrix<float>::Constant(6, 53, std::numeric_limits<float>::quiet_NaN());
    linear.forward_residual(x, residual, y, 2, scratch);
    EXPECT_LT(max_abs_diff(y, expected), 1e-5) << "packed " << packed;
    RowMatrix<float> onto = residual;
    linear.forward_accumulate(x, onto, 2, scratch);
    EXPECT_EQ(onto, y) << "packed " << packed;
  }
}

TEST(PackedLinear, Bf16AfterPackingRepacksTheRoundedWeight) {
  sf::Linear<float> linear(40, 70);
  std::mt19937_64 rng(5);
  linear.randomize(rng, 0.5, 0.5);
  sf::Linear<float> rounded = linear;
  rounded.weight() = rounded.weight().unaryExpr([](float w) { return float(Eigen::bfloat16(w)); });
  linear.pack_weights();
  linear.use_bf16_weights();
  EXPECT_TRUE(linear.has_packed_weights());
  EXPECT_TRUE(linear.uses_bf16_weights());
  EXPECT_EQ(linear.packed_bytes(), (sizeof(float) + 2) * 40u * 70u);
  // Above bf16_gemm_max_rows the packed float copy is read: it must hold the rounded values.
  const Index rows = sf::ops::bf16_gemm_max_rows + 3;
  const RowMatrix<float> x = random_matrix<float>(rows, 40, 6);
  RowMatrix<float> y(rows, 70);
  const sf::Linear<float>& view = linear;
  EXPECT_EQ(view.weight(), rounded.weight());
  linear.forward(x, y, 1);
  RowMatrix<float> want(rows, 70);
  rounded.forward(x, want, 1);
  EXPECT_EQ(y, want);
  EXPECT_LT(max_abs_diff(y, naive::linear(x.cast<double>(), rounded.weight().cast<double>(),
                                          rounded.bias().cast<double>())),
            1e-5);
}

// A packed stack computes the unpacked stack's bits: the same kernel adds the same products in
// the same order, on every route (above small_gemm_max_rows both read the unpacked weight).
TEST(PackedStack, EqualsTheUnpackedStackBitForBit) {
  sf::BlockConfig config;
  config.d_model = 48;
  config.n_heads = 4;
  config.d_ff = 112;
  for (Index tokens : {Index(5), Index(16), sf::ops::bf16_gemm_max_rows + 7}) {
    sf::Stack<sf::SharedAttention> packed(config, 3);
    packed.randomize(13, 0.2, 0.2, 0.1);
    const sf::Stack<sf::SharedAttention> plain = packed;
    packed.pack_weights();
    int linears = 0;
    const auto& view = packed;
    view.attention(0).attention().qkv();  // const access keeps the copies
    packed.for_each_linear([&](sf::Linear<float>& l) {
      EXPECT_TRUE(l.has_packed_weights());
      ++linears;
    });
    EXPECT_EQ(linears, 1 * 2 + 3 * 2) << "1 shared attention, 3 FFN slots, 2 Linears each";
    const sf::Batch batch = sf::Batch::padded(tokens, {tokens, tokens / 2 + 1});
    const RowMatrix<float> x = random_matrix<float>(batch.tokens(), 48, 14);
    for (int threads : {1, 2}) {
      const RowMatrix<float> got = packed.forward(x, batch, threads);
      EXPECT_EQ(got, plain.forward(x, batch, threads)) << tokens << " tokens, threads " << threads;
      EXPECT_LT(max_abs_diff(got, naive::stack(plain, x.cast<double>(), batch)), 1e-4);
    }
  }
}

TEST(PackedEncoder, PacksEveryLinearOnce) {
  sf::AlbertModel<float> model(sf::testing::tiny_albert_config());
  model.randomize(3);
  const sf::AlbertModel<float> plain = model;
  model.pack_weights();
  std::size_t bytes = 0;
  int linears = 0;
  model.for_each_linear([&](sf::Linear<float>& l) {
    bytes += l.packed_bytes();
    ++linears;
  });
  EXPECT_EQ(linears, 6);  // projection, one shared block's 4 Linears, pooler
  // Each distinct weight once: the projection 16x32, the block's 3*32*32 + 32*32 + 2*32*64, the
  // pooler.
  EXPECT_EQ(bytes, sizeof(float) * (16 * 32 + 32 * 96 + 32 * 32 + 32 * 64 * 2 + 32 * 32));
  model.pack_weights();  // for_each_linear's mutable access dropped them
  sf::IdMatrix ids(2, 4), mask(2, 4);
  ids << 2, 7, 9, 3, 2, 11, 3, 0;
  mask << 1, 1, 1, 1, 1, 1, 1, 0;
  for (int threads : {1, 2}) {
    const auto got = model.forward(ids, sf::IdMatrix(), mask, threads);
    const auto want = plain.forward(ids, sf::IdMatrix(), mask, threads);
    EXPECT_EQ(got.last_hidden_state, want.last_hidden_state);
    EXPECT_EQ(got.pooler_output, want.pooler_output);
  }
}
