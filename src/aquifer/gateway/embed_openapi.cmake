# cmake -DIN=openapi.json -DOUT=openapi_data.cc -P embed_openapi.cmake
# Writes a .cc defining aquifer::gateway::OpenApiJson() over the file's text.
file(READ ${IN} content)
string(FIND "${content}" ")aquifer_openapi\"" clash)
if(NOT clash EQUAL -1)
  message(FATAL_ERROR "${IN} contains the raw-string delimiter )aquifer_openapi\"")
endif()
file(WRITE ${OUT}.tmp "// Generated from src/aquifer/gateway/openapi.json by embed_openapi.cmake; do not edit.
#include \"aquifer/gateway/api.h\"

namespace aquifer::gateway {
namespace {
constexpr std::string_view kOpenApiJson = R\"aquifer_openapi(${content})aquifer_openapi\";
}  // namespace
std::string_view OpenApiJson() { return kOpenApiJson; }
}  // namespace aquifer::gateway
")
file(COPY_FILE ${OUT}.tmp ${OUT} ONLY_IF_DIFFERENT)
file(REMOVE ${OUT}.tmp)
