# e2e_bench (bench/e2e_bench.cc): the real server over HTTP/WebSocket vs raw RocksDB.
# Included from bench/CMakeLists.txt so the binary lands in build/bench (`make bench`).
include(${CMAKE_SOURCE_DIR}/tests/e2e/harness.cmake)
add_executable(e2e_bench ${CMAKE_SOURCE_DIR}/bench/e2e_bench.cc)
target_link_libraries(e2e_bench PRIVATE aquifer_e2e_harness aquifer_ext_rocksdb Threads::Threads)
target_compile_definitions(e2e_bench PRIVATE AQUIFER_BIN="$<TARGET_FILE:aquifer>")
add_dependencies(e2e_bench aquifer)
# serve_bench (bench/serve_bench.cc): subscriber latency and fan-out, lookups vs /healthz, idle
# subscription memory, RSS while ingesting, SQL through the engine vs DuckDB directly.
add_executable(serve_bench ${CMAKE_SOURCE_DIR}/bench/serve_bench.cc)
target_link_libraries(serve_bench PRIVATE aquifer_e2e_harness aquifer_ext_duckdb Threads::Threads)
target_compile_definitions(serve_bench PRIVATE AQUIFER_BIN="$<TARGET_FILE:aquifer>")
add_dependencies(serve_bench aquifer)
