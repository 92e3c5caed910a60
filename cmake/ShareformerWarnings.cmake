# Warning flags for shareformer's own targets (tests, tools, examples); never put on consumers.
add_library(shareformer_warnings INTERFACE)
target_compile_options(shareformer_warnings INTERFACE
  $<$<CXX_COMPILER_ID:GNU,Clang>:-Wall -Wextra -Wpedantic -Wshadow -Wconversion -Wno-sign-conversion>
  $<$<AND:$<CXX_COMPILER_ID:GNU,Clang>,$<BOOL:${SHAREFORMER_WARNINGS_AS_ERRORS}>>:-Werror>)
