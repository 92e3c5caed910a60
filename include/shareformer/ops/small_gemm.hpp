// SPDX-License-Identifier: MIT
// A register-blocked GEMM kernel for few rows (a handful of tokens times a weight matrix), written
// with Eigen's packet primitives so that it runs on every SIMD instruction set Eigen supports.
#pragma once

#include <shareformer/core/types.hpp>

#include <Eigen/Core>
#include <algorithm>
#include <type_traits>

namespace shareformer::ops::detail {

template <typename T>
using Packet = typename Eigen::internal::packet_traits<T>::type;
template <typename T>
inline constexpr int packet_size = Eigen::internal::unpacket_traits<Packet<T>>::size;

/// Rows of c one tile updates: with 32 vector registers, 8 rows x 3 packets of accumulators plus
/// the 3 packets of b and one broadcast fit; with 16, 4 rows x 3.
inline constexpr int small_gemm_rows = EIGEN_ARCH_DEFAULT_NUMBER_OF_REGISTERS >= 32 ? 8 : 4;
inline constexpr int small_gemm_packets = 3;

/// One packet of T from b's storage: T itself, or (T = float) bfloat16, widened exactly by
/// moving its 16 bits into the high half of a float.
template <typename T, typename B>
EIGEN_ALWAYS_INLINE Packet<T> load_b(const B* p) {
  if constexpr (std::is_same_v<B, T>) {
    return Eigen::internal::ploadu<Packet<T>>(p);
  } else {
    static_assert(std::is_same_v<T, float> && std::is_same_v<B, Eigen::bfloat16>,
                  "b is stored as T or, for float, as bfloat16");
#if defined(EIGEN_VECTORIZE_AVX512)
    return Eigen::internal::Bf16ToF32(Eigen::internal::ploadu<Eigen::internal::Packet16bf>(p));
#elif defined(EIGEN_VECTORIZE_AVX)
    return Eigen::internal::Bf16ToF32(Eigen::internal::ploadu<Eigen::internal::Packet8bf>(p));
#elif defined(EIGEN_VECTORIZE_SSE2)
    const __m128i bits = _mm_loadl_epi64(reinterpret_cast<const __m128i*>(p));
    return _mm_castsi128_ps(_mm_unpacklo_epi16(_mm_setzero_si128(), bits));
#else
    EIGEN_ALIGN_MAX T widened[packet_size<T>];
    for (int i = 0; i < packet_size<T>; ++i) widened[i] = static_cast<T>(p[i]);
    return Eigen::internal::pload<Packet<T>>(widened);
#endif
  }
}

/// c[0:MR, 0:NR*W] += a[0:MR, 0:k] * b[0:k, 0:NR*W], the accumulators held in registers for the
/// whole k loop. Streams b row by row: each loaded packet of b serves MR rows.
template <typename T, int MR, int NR, typename B>
EIGEN_ALWAYS_INLINE void small_tile(Index k, const T* a, Index lda, const B* b, Index ldb, T* c,
                                    Index ldc) {
  using Eigen::internal::pmadd;
  using P = Packet<T>;
  constexpr int W = packet_size<T>;
  P acc[MR][NR];
  for (int i = 0; i < MR; ++i)
    for (int j = 0; j < NR; ++j) acc[i][j] = Eigen::internal::ploadu<P>(c + i * ldc + j * W);
  for (Index p = 0; p < k; ++p) {
    P bv[NR];
    for (int j = 0; j < NR; ++j) bv[j] = load_b<T>(b + p * ldb + j * W);
    for (int i = 0; i < MR; ++i) {
      const P av = Eigen::internal::pset1<P>(a[i * lda + p]);
      for (int j = 0; j < NR; ++j) acc[i][j] = pmadd(av, bv[j], acc[i][j]);
    }
  }
  for (int i = 0; i < MR; ++i)
    for (int j = 0; j < NR; ++j) Eigen::internal::pstoreu(c + i * ldc + j * W, acc[i][j]);
}

/// Rows [0, m) in tiles of MR rows (the last tile smaller), for one panel of NR packets.
template <typename T, int NR, typename B>
void small_panel(Index m, Index k, const T* a, Index lda, const B* b, Index ldb, T* c, Index ldc) {
  constexpr int MR = small_gemm_rows;
  Index i = 0;
  for (; i + MR <= m; i += MR) small_tile<T, MR, NR>(k, a + i * lda, lda, b, ldb, c + i * ldc, ldc);
  const T* ai = a + i * lda;
  T* ci = c + i * ldc;
  switch (m - i) {
    case 7: if constexpr (MR > 7) small_tile<T, 7, NR>(k, ai, lda, b, ldb, ci, ldc); break;
    case 6: if constexpr (MR > 6) small_tile<T, 6, NR>(k, ai, lda, b, ldb, ci, ldc); break;
    case 5: if constexpr (MR > 5) small_tile<T, 5, NR>(k, ai, lda, b, ldb, ci, ldc); break;
    case 4: if constexpr (MR > 4) small_tile<T, 4, NR>(k, ai, lda, b, ldb, ci, ldc); break;
    case 3: small_tile<T, 3, NR>(k, ai, lda, b, ldb, ci, ldc); break;
    case 2: small_tile<T, 2, NR>(k, ai, lda, b, ldb, ci, ldc); break;
    case 1: small_tile<T, 1, NR>(k, ai, lda, b, ldb, ci, ldc); break;
    default: break;
  }
}

/// Depth of one pass over k: a (kc x 3 packets) block of b stays in L1 while every row tile of c
/// reads it (kc 256: 48 KiB of floats; 256 measured best of 96..512 in benchmarks/bench_ops).
#ifndef SHAREFORMER_SMALL_GEMM_KC
#define SHAREFORMER_SMALL_GEMM_KC 256
#endif
inline constexpr Index small_gemm_kc = SHAREFORMER_SMALL_GEMM_KC;

/// c (m, n) += a (m, k) * b (k, n) for columns [col_begin, col_end) of b and c, all row-major;
/// b holds T or (T = float) bfloat16, widened to T as it is read.
/// k goes in passes of small_gemm_kc; within a pass, columns go in panels of 3 packets, then 1
/// packet, then one scalar column at a time. After the last pass over a panel,
/// epilogue(first column, columns) runs on it while it is still in cache.
template <typename T, typename B, typename Epilogue>
void small_gemm(Index m, Index k, const T* a, Index lda, const B* b, Index ldb, T* c, Index ldc,
                Index col_begin, Index col_end, Epilogue&& epilogue) {
  constexpr int W = packet_size<T>;
  constexpr int NR = small_gemm_packets;
  for (Index k0 = 0; k0 < k; k0 += small_gemm_kc) {
    const Index kc = std::min(small_gemm_kc, k - k0);
    const bool last = k0 + kc == k;
    const T* ak = a + k0;
    const B* bk = b + k0 * ldb;
    Index j = col_begin;
    for (; j + NR * W <= col_end; j += NR * W) {
      small_panel<T, NR>(m, kc, ak, lda, bk + j, ldb, c + j, ldc);
      if (last) epilogue(j, Index(NR * W));
    }
    for (; j + W <= col_end; j += W) {
      small_panel<T, 1>(m, kc, ak, lda, bk + j, ldb, c + j, ldc);
      if (last) epilogue(j, Index(W));
    }
    if (j == col_end) continue;
    for (Index col = j; col < col_end; ++col)
      for (Index i = 0; i < m; ++i) {
        T acc = c[i * ldc + col];
        for (Index p = 0; p < kc; ++p) acc += ak[i * lda + p] * static_cast<T>(bk[p * ldb + col]);
        c[i * ldc + col] = acc;
      }
    if (last) epilogue(j, col_end - j);
  }
  if (k == 0) epilogue(col_begin, col_end - col_begin);
}

}  // namespace shareformer::ops::detail
