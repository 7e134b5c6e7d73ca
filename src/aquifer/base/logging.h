#pragma once

// Logging: a thin layer over spdlog so the rest of the code names one place.
//   AQ_LOG(Info, "opened {} with {} column families", path, n);
// Levels: Debug, Info, Warn, Error. The level comes from AQUIFER_LOG_LEVEL
// (debug|info|warn|error|off), default info. Thread-safe.

#include <spdlog/spdlog.h>

namespace aquifer::logging {

// Reads AQUIFER_LOG_LEVEL once; later calls are cheap. Called by AQ_LOG.
void EnsureInitialized();
void SetLevel(std::string_view level);

}  // namespace aquifer::logging

#define AQ_LOG_Debug spdlog::level::debug
#define AQ_LOG_Info spdlog::level::info
#define AQ_LOG_Warn spdlog::level::warn
#define AQ_LOG_Error spdlog::level::err
#define AQ_LOG(level, ...)                                 \
  do {                                                     \
    ::aquifer::logging::EnsureInitialized();               \
    spdlog::log(AQ_LOG_##level, __VA_ARGS__);              \
  } while (0)
