# Finds shareformer's dependencies; a missing one stops configuration with the line that installs it.
include(GNUInstallDirs)

macro(shareformer_require _pkg _target _debian)
  if(NOT TARGET ${_target})
    find_package(${_pkg} ${ARGN} QUIET)
  endif()
  if(NOT TARGET ${_target})
    message(FATAL_ERROR "shareformer needs ${_pkg} (target ${_target}). "
                        "On Debian/Ubuntu: apt-get install -y ${_debian}")
  endif()
endmacro()

shareformer_require(Eigen3 Eigen3::Eigen libeigen3-dev 3.4 NO_MODULE)
shareformer_require(nlohmann_json nlohmann_json::nlohmann_json nlohmann-json3-dev 3.2)
if(SHAREFORMER_USE_OPENMP)
  find_package(OpenMP COMPONENTS CXX)
endif()
if(SHAREFORMER_BUILD_TESTS)
  shareformer_require(GTest GTest::gtest_main libgtest-dev)
endif()
if(SHAREFORMER_BUILD_BENCHMARKS)
  shareformer_require(benchmark benchmark::benchmark libbenchmark-dev)
endif()
if(SHAREFORMER_BUILD_TOOLS OR SHAREFORMER_BUILD_BENCHMARKS)
  shareformer_require(CLI11 CLI11::CLI11 libcli11-dev)
  shareformer_require(fmt fmt::fmt libfmt-dev)
endif()
# OpenBLAS is optional: the library's default products are Eigen-only. It is looked for either way,
# because the CLI (and a second build of the op tests) use it when it is there.
find_library(SHAREFORMER_BLAS_LIBRARY NAMES openblas)
if(SHAREFORMER_USE_BLAS AND NOT SHAREFORMER_BLAS_LIBRARY)
  message(FATAL_ERROR "SHAREFORMER_USE_BLAS needs OpenBLAS. On Debian/Ubuntu: apt-get install -y libopenblas-dev")
endif()
