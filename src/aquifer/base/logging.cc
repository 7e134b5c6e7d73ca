#include "aquifer/base/logging.h"

#include <cstdlib>
#include <mutex>
#include <string>

#include <spdlog/sinks/stdout_color_sinks.h>

namespace aquifer::logging {

void SetLevel(std::string_view level) {
  spdlog::set_level(spdlog::level::from_str(std::string(level)));
}

void EnsureInitialized() {
  static std::once_flag once;
  std::call_once(once, [] {
    auto logger = spdlog::stderr_color_mt("aquifer");
    logger->set_pattern("%Y-%m-%dT%H:%M:%S.%e %^%l%$ [%t] %v");
    spdlog::set_default_logger(logger);
    const char* level = std::getenv("AQUIFER_LOG_LEVEL");
    SetLevel(level != nullptr ? level : "info");
  });
}

}  // namespace aquifer::logging
