# Warning flags for shareformer's own targets (tests, tools, examples); never put on consumers.
# GCC 12 reports -Wmaybe-uninitialized inside its own AVX-512 intrinsics when Eigen's packet code is
# inlined with -march=native (a known false positive), so that one warning stays a warning.
add_library(shareformer_warnings INTERFACE)
target_compile_options(shareformer_warnings INTERFACE
  $<$<CXX_COMPILER_ID:GNU,Clang>:-Wall -Wextra -Wpedantic -Wshadow -Wconversion -Wno-sign-conversion>
  $<$<AND:$<CXX_COMPILER_ID:GNU,Clang>,$<BOOL:${SHAREFORMER_WARNINGS_AS_ERRORS}>>:-Werror>
  $<$<AND:$<CXX_COMPILER_ID:GNU>,$<BOOL:${SHAREFORMER_WARNINGS_AS_ERRORS}>>:-Wno-error=maybe-uninitialized>)
