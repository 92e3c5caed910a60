// SPDX-License-Identifier: MIT
// The main() of every benchmark binary: Google Benchmark's, with OpenBLAS pinned to one thread in
// SHAREFORMER_USE_BLAS builds (shareformer splits products over its own threads).
#pragma once

#include <benchmark/benchmark.h>

#if defined(SHAREFORMER_USE_BLAS)
extern "C" void openblas_set_num_threads(int);
#endif

int main(int argc, char** argv) {
#if defined(SHAREFORMER_USE_BLAS)
  openblas_set_num_threads(1);
#endif
  benchmark::Initialize(&argc, argv);
  if (benchmark::ReportUnrecognizedArguments(argc, argv)) return 1;
  benchmark::RunSpecifiedBenchmarks();
  benchmark::Shutdown();
  return 0;
}
