# Finds every external library once; modules link the imported targets below.
find_package(PkgConfig REQUIRED)
find_package(Threads REQUIRED)
find_package(fmt REQUIRED)
find_package(spdlog REQUIRED)
find_package(nlohmann_json REQUIRED)
find_package(OpenSSL REQUIRED)
find_package(SQLite3 REQUIRED)
find_package(simdjson REQUIRED)
find_package(tomlplusplus REQUIRED)        # aquifer serve --config
find_package(CURL REQUIRED)
find_package(Boost 1.74 REQUIRED)  # header-only: Beast/Asio
pkg_check_modules(PQ REQUIRED IMPORTED_TARGET libpq)  # Postgres drivers
pkg_check_modules(RDKAFKA REQUIRED IMPORTED_TARGET rdkafka>=2.0)  # Kafka drivers (librdkafka's C API)
# Google Cloud drivers (Bigtable, Pub/Sub): Debian's gRPC and protobuf; code generated from proto/
# at build time (aquifer_proto_library in AquiferHelpers.cmake).
pkg_check_modules(GRPCPP REQUIRED IMPORTED_TARGET grpc++>=1.51)
pkg_check_modules(PROTOBUF REQUIRED IMPORTED_TARGET protobuf>=3.21)
find_program(AQUIFER_PROTOC protoc REQUIRED)
find_program(AQUIFER_GRPC_CPP_PLUGIN grpc_cpp_plugin REQUIRED)
find_path(AQUIFER_PROTOBUF_INCLUDE_DIR google/protobuf/any.proto REQUIRED)
add_library(aquifer_ext_protobuf INTERFACE)
target_link_libraries(aquifer_ext_protobuf INTERFACE PkgConfig::PROTOBUF)
add_library(aquifer_ext_grpc INTERFACE)
target_link_libraries(aquifer_ext_grpc INTERFACE PkgConfig::GRPCPP aquifer_ext_protobuf)

find_path(ROCKSDB_INCLUDE_DIR rocksdb/db.h REQUIRED)
find_library(ROCKSDB_LIBRARY rocksdb REQUIRED)
add_library(aquifer_ext_rocksdb INTERFACE)
target_include_directories(aquifer_ext_rocksdb INTERFACE ${ROCKSDB_INCLUDE_DIR})
target_link_libraries(aquifer_ext_rocksdb INTERFACE ${ROCKSDB_LIBRARY})

# DuckDB: prebuilt library and header fetched from npm by scripts/setup.sh.
set(AQUIFER_DUCKDB_DIR ${CMAKE_SOURCE_DIR}/third_party/duckdb)
if(EXISTS ${AQUIFER_DUCKDB_DIR}/lib/libduckdb.so)
  add_library(aquifer_ext_duckdb SHARED IMPORTED GLOBAL)
  set_target_properties(aquifer_ext_duckdb PROPERTIES
    IMPORTED_LOCATION ${AQUIFER_DUCKDB_DIR}/lib/libduckdb.so
    INTERFACE_INCLUDE_DIRECTORIES ${AQUIFER_DUCKDB_DIR}/include)
  set(CMAKE_BUILD_RPATH ${AQUIFER_DUCKDB_DIR}/lib)
else()
  message(FATAL_ERROR "DuckDB not found in ${AQUIFER_DUCKDB_DIR}: run scripts/setup.sh")
endif()

if(AQUIFER_BUILD_TESTS OR AQUIFER_FUZZ)
  find_package(GTest REQUIRED)
endif()
if(AQUIFER_BUILD_BENCH AND NOT AQUIFER_FUZZ)
  find_package(benchmark REQUIRED)
endif()
