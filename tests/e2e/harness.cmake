# The e2e harness library (Boost.Beast HTTP + WebSocket client, child-process
# server control). Included by tests/soak, tests/e2e and bench (e2e_bench), whichever comes first.
if(NOT TARGET aquifer_e2e_harness)
  find_package(Boost 1.74 REQUIRED)  # header-only Beast/Asio
  add_library(aquifer_e2e_harness STATIC ${CMAKE_SOURCE_DIR}/tests/e2e/harness.cc)
  target_include_directories(aquifer_e2e_harness PUBLIC ${CMAKE_SOURCE_DIR}/tests/e2e)
  target_link_libraries(aquifer_e2e_harness PUBLIC nlohmann_json::nlohmann_json Boost::headers Threads::Threads)
  target_compile_definitions(aquifer_e2e_harness PRIVATE AQUIFER_BIN="$<TARGET_FILE:aquifer>")
endif()
