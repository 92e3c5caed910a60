# Writes the CLI tests' fixture into DIR (cmake -P): a tiny Hub-layout BERT, the same model in the
# library's own format, a tiny model with shared FFNs, and input files good and bad.
cmake_minimum_required(VERSION 3.25)
file(REMOVE_RECURSE "${DIR}")
file(MAKE_DIRECTORY "${DIR}/tiny-bert")
execute_process(COMMAND "${HELPER}" make-model "${DIR}/tiny-bert" COMMAND_ERROR_IS_FATAL ANY)
foreach(_kind good out-of-vocab too-long mask-mismatch float-ids no-ids)
  execute_process(COMMAND "${HELPER}" make-input "${DIR}/input-${_kind}.safetensors" ${_kind}
                  COMMAND_ERROR_IS_FATAL ANY)
endforeach()
execute_process(COMMAND "${HELPER}" convert "${DIR}/tiny-bert" "${DIR}/tiny-bert.safetensors"
                COMMAND_ERROR_IS_FATAL ANY)
execute_process(COMMAND "${HELPER}" make-shared "${DIR}/tiny-ffn.safetensors" ffn COMMAND_ERROR_IS_FATAL ANY)
file(WRITE "${DIR}/input-corrupt.safetensors" "this is not a safetensors file at all\n")
file(MAKE_DIRECTORY "${DIR}/not-a-model")
