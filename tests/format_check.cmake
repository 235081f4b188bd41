# Fails when any of fanout's C++ sources differs from what clang-format would write.
# Usage: cmake -DCLANG_FORMAT=<exe> -DSOURCE_DIR=<repo> -P format_check.cmake
file(GLOB_RECURSE files
  ${SOURCE_DIR}/routing/*.h ${SOURCE_DIR}/routing/*.cc
  ${SOURCE_DIR}/transport/*.h ${SOURCE_DIR}/transport/*.cc
  ${SOURCE_DIR}/engine/*.h ${SOURCE_DIR}/engine/*.cc
  ${SOURCE_DIR}/source/*.h ${SOURCE_DIR}/source/*.cc
  ${SOURCE_DIR}/tools/*.h ${SOURCE_DIR}/tools/*.cc
  ${SOURCE_DIR}/bench/*.h ${SOURCE_DIR}/bench/*.cc
  ${SOURCE_DIR}/tests/*.h ${SOURCE_DIR}/tests/*.cc)
execute_process(COMMAND ${CLANG_FORMAT} --dry-run --Werror --style=file ${files}
                RESULT_VARIABLE rc ERROR_VARIABLE err)
if(NOT rc EQUAL 0)
  message(FATAL_ERROR "clang-format check failed (run clang-format -i on these files):\n${err}")
endif()
list(LENGTH files n)
message(STATUS "clang-format: ${n} files clean")
