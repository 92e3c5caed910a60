// SPDX-License-Identifier: MIT
// The op tests again, with every product above 64 rows on Eigen's packed GEBP path: the split that
// SHAREFORMER_USE_BLAS builds take (there with OpenBLAS behind the same entry point).
#ifndef SHAREFORMER_SMALL_GEMM_MAX_ROWS
#define SHAREFORMER_SMALL_GEMM_MAX_ROWS 64
#endif
#include "unit/test_ops.cpp"  // NOLINT(bugprone-suspicious-include): the same tests, rebuilt
