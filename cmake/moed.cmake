# Build helpers: every target in moed is declared through these, so that the DEPS lists are the
# architecture (see docs/ARCHITECTURE.md) and nothing is globbed.

set(MOED_TEST_DATA_DIR "${PROJECT_SOURCE_DIR}/tests/data")

# moed_cc_library(NAME [ALWAYSLINK] HDRS ... SRCS ... DEPS ...)
# ALWAYSLINK keeps every object of the library in the final link even if nothing references it,
# for code that registers itself at static-initialisation time (architectures, subcommands).
function(moed_cc_library NAME)
  cmake_parse_arguments(ARG "ALWAYSLINK" "" "HDRS;SRCS;DEPS" ${ARGN})
  if(ARG_ALWAYSLINK)
    add_library(${NAME}_objects STATIC ${ARG_SRCS} ${ARG_HDRS})
    target_include_directories(${NAME}_objects PUBLIC ${PROJECT_SOURCE_DIR})
    target_link_libraries(${NAME}_objects PUBLIC ${ARG_DEPS})
    add_library(${NAME} INTERFACE)
    target_link_libraries(${NAME} INTERFACE "$<LINK_LIBRARY:WHOLE_ARCHIVE,${NAME}_objects>")
  elseif(ARG_SRCS)
    add_library(${NAME} STATIC ${ARG_SRCS} ${ARG_HDRS})
    target_include_directories(${NAME} PUBLIC ${PROJECT_SOURCE_DIR})
    target_link_libraries(${NAME} PUBLIC ${ARG_DEPS})
  else()
    add_library(${NAME} INTERFACE)
    target_include_directories(${NAME} INTERFACE ${PROJECT_SOURCE_DIR})
    target_link_libraries(${NAME} INTERFACE ${ARG_DEPS})
  endif()
endfunction()

# moed_cc_binary(NAME SRCS ... DEPS ...)
function(moed_cc_binary NAME)
  cmake_parse_arguments(ARG "" "" "SRCS;DEPS" ${ARGN})
  add_executable(${NAME} ${ARG_SRCS})
  target_link_libraries(${NAME} PRIVATE ${ARG_DEPS})
endfunction()

# moed_cc_test(NAME SRCS ... DEPS ...): a GoogleTest binary whose cases ctest runs one by one.
# Tests read their data from tests/data through MOED_TEST_DATA_DIR, never from ../shared.
function(moed_cc_test NAME)
  if(MOED_FUZZ)
    return()  # the fuzz build compiles only fuzzers
  endif()
  cmake_parse_arguments(ARG "" "" "SRCS;DEPS" ${ARGN})
  add_executable(${NAME} ${ARG_SRCS})
  target_link_libraries(${NAME} PRIVATE ${ARG_DEPS} GTest::gtest GTest::gmock GTest::gtest_main)
  target_compile_definitions(${NAME} PRIVATE MOED_TEST_DATA_DIR="${MOED_TEST_DATA_DIR}"
                                             MOED_BINARY_DIR="${PROJECT_BINARY_DIR}")
  gtest_discover_tests(${NAME} DISCOVERY_TIMEOUT 60 PROPERTIES TIMEOUT 600)
endfunction()

# moed_cc_fuzzer(NAME SRCS ... DEPS ... CORPUS dir): a libFuzzer target, run by ctest for
# MOED_FUZZ_SECONDS over a copy of its seed corpus; any crash or sanitizer report fails the test.
function(moed_cc_fuzzer NAME)
  if(NOT MOED_FUZZ)
    return()
  endif()
  cmake_parse_arguments(ARG "" "CORPUS" "SRCS;DEPS" ${ARGN})
  add_executable(${NAME} ${ARG_SRCS})
  target_link_libraries(${NAME} PRIVATE ${ARG_DEPS})
  target_link_options(${NAME} PRIVATE -fsanitize=fuzzer)
  set(work "${CMAKE_CURRENT_BINARY_DIR}/${NAME}_corpus")
  add_test(NAME ${NAME}
           COMMAND ${CMAKE_COMMAND} -DFUZZER=$<TARGET_FILE:${NAME}> -DSEEDS=${ARG_CORPUS}
                   -DWORK=${work} -DSECONDS=${MOED_FUZZ_SECONDS}
                   -P ${PROJECT_SOURCE_DIR}/cmake/run_fuzzer.cmake)
  set_tests_properties(${NAME} PROPERTIES LABELS fuzz TIMEOUT 900)
  if(NOT TARGET fuzzers)
    add_custom_target(fuzzers)
  endif()
  add_dependencies(fuzzers ${NAME})
endfunction()
