# aquifer_module(NAME [DEPS targets...])
#   One static library per module folder: every *.cc in the folder except *_test.cc,
#   *_benchmark.cc and *_fuzz.cc. Unit tests beside the code (*_test.cc) become one
#   test binary NAME_test registered with ctest, unless fuzzing.
function(aquifer_module name)
  cmake_parse_arguments(ARG "" "" "DEPS;TEST_DEPS" ${ARGN})
  file(GLOB srcs CONFIGURE_DEPENDS ${CMAKE_CURRENT_SOURCE_DIR}/*.cc)
  list(FILTER srcs EXCLUDE REGEX "_(test|benchmark|fuzz)\\.cc$")
  if(srcs)
    add_library(${name} STATIC ${srcs})
    target_link_libraries(${name} PUBLIC ${ARG_DEPS})
  else()  # a module whose sources have not landed yet: headers only
    add_library(${name} INTERFACE)
    target_link_libraries(${name} INTERFACE ${ARG_DEPS})
  endif()
  file(GLOB tests CONFIGURE_DEPENDS ${CMAKE_CURRENT_SOURCE_DIR}/*_test.cc)
  if(tests AND AQUIFER_BUILD_TESTS AND NOT AQUIFER_FUZZ)
    aquifer_test(${name}_test SOURCES ${tests} DEPS ${name} ${ARG_TEST_DEPS})
  endif()
endfunction()

# aquifer_test(NAME SOURCES files... DEPS targets... [LABELS l...])
function(aquifer_test name)
  cmake_parse_arguments(ARG "" "TIMEOUT" "SOURCES;DEPS;LABELS" ${ARGN})
  add_executable(${name} ${ARG_SOURCES})
  target_link_libraries(${name} PRIVATE ${ARG_DEPS} GTest::gtest GTest::gtest_main GTest::gmock)
  target_compile_definitions(${name} PRIVATE
    AQUIFER_SOURCE_DIR="${CMAKE_SOURCE_DIR}" AQUIFER_BINARY_DIR="${CMAKE_BINARY_DIR}")
  if(NOT ARG_TIMEOUT)
    set(ARG_TIMEOUT 600)
  endif()
  if(AQUIFER_WITH_TSAN OR AQUIFER_WITH_ASAN)  # the sanitized binaries run several times slower
    math(EXPR ARG_TIMEOUT "${ARG_TIMEOUT} * 3")
  endif()
  # The suites the sanitizer builds run (AQUIFER_SANITIZER_TESTS, a regex on the target name)
  # are the dependencies of the `sanitizer_tests` target.
  if(name MATCHES "${AQUIFER_SANITIZER_TESTS}" AND
     NOT (AQUIFER_WITH_TSAN AND name MATCHES "${AQUIFER_TSAN_EXCLUDED_TESTS}"))
    set_property(GLOBAL APPEND PROPERTY AQUIFER_SANITIZED_TESTS ${name})
  endif()
  gtest_discover_tests(${name} DISCOVERY_TIMEOUT 60
    PROPERTIES TIMEOUT ${ARG_TIMEOUT} LABELS "${ARG_LABELS}")
endfunction()

# aquifer_proto_library(NAME PROTOS paths... [GRPC] [DEPS targets...])
#   Generates C++ for .proto files under proto/ (paths relative to it, e.g.
#   google/rpc/status.proto) into build/proto/ at build time and builds them into one static
#   library. GRPC also runs grpc_cpp_plugin (for files declaring services). Include the
#   generated headers by their proto path: "google/rpc/status.pb.h".
function(aquifer_proto_library name)
  cmake_parse_arguments(ARG "GRPC" "" "PROTOS;DEPS" ${ARGN})
  set(out ${CMAKE_BINARY_DIR}/proto)
  set(srcs)
  foreach(proto ${ARG_PROTOS})
    string(REGEX REPLACE "\\.proto$" "" base ${proto})
    set(generated ${out}/${base}.pb.cc ${out}/${base}.pb.h)
    set(plugin_args)
    if(ARG_GRPC)
      list(APPEND generated ${out}/${base}.grpc.pb.cc ${out}/${base}.grpc.pb.h)
      set(plugin_args --grpc_out=${out} --plugin=protoc-gen-grpc=${AQUIFER_GRPC_CPP_PLUGIN})
    endif()
    add_custom_command(
      OUTPUT ${generated}
      COMMAND ${CMAKE_COMMAND} -E make_directory ${out}
      COMMAND ${AQUIFER_PROTOC} -I${CMAKE_SOURCE_DIR}/proto -I${AQUIFER_PROTOBUF_INCLUDE_DIR}
              --cpp_out=${out} ${plugin_args} ${CMAKE_SOURCE_DIR}/proto/${proto}
      DEPENDS ${CMAKE_SOURCE_DIR}/proto/${proto}
      COMMENT "protoc ${proto}"
      VERBATIM)
    list(APPEND srcs ${generated})
  endforeach()
  add_library(${name} STATIC ${srcs})
  target_include_directories(${name} SYSTEM PUBLIC ${out})
  target_compile_options(${name} PRIVATE -w)  # generated code: not ours to warn about
  target_link_libraries(${name} PUBLIC aquifer_ext_protobuf ${ARG_DEPS})
  if(ARG_GRPC)
    target_link_libraries(${name} PUBLIC aquifer_ext_grpc)
  endif()
endfunction()
