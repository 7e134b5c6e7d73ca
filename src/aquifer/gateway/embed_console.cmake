# cmake -DDIR=console -DFILES=index.html,app.js,... -DOUT=console_data.cc -P embed_console.cmake
# Writes a .cc defining aquifer::gateway::ConsoleFiles() and ConsoleVersion() over the files'
# contents (raw strings), so the binary serves the web console with no files beside it.
string(REPLACE "," ";" FILES "${FILES}")
set(version_input "")
set(decls "")
set(entries "")
set(idx 0)
foreach(name IN LISTS FILES)
  file(READ ${DIR}/${name} content)
  string(FIND "${content}" ")aquifer_console\"" clash)
  if(NOT clash EQUAL -1)
    message(FATAL_ERROR "${DIR}/${name} contains the raw-string delimiter )aquifer_console\"")
  endif()
  file(SHA256 ${DIR}/${name} digest)
  string(APPEND version_input "${name}:${digest};")
  if(name MATCHES "\\.html$")
    set(type "text/html; charset=utf-8")
  elseif(name MATCHES "\\.css$")
    set(type "text/css; charset=utf-8")
  elseif(name MATCHES "\\.js$")
    set(type "text/javascript; charset=utf-8")
  elseif(name MATCHES "\\.svg$")
    set(type "image/svg+xml")
  else()
    message(FATAL_ERROR "embed_console.cmake: no Content-Type for ${name}")
  endif()
  string(APPEND decls "constexpr std::string_view kFile${idx} = R\"aquifer_console(${content})aquifer_console\";\n")
  string(APPEND entries "    {\"${name}\", \"${type}\", kFile${idx}},\n")
  math(EXPR idx "${idx} + 1")
endforeach()
string(SHA256 version "${version_input}")
string(SUBSTRING "${version}" 0 16 version)
file(WRITE ${OUT}.tmp "// Generated from src/aquifer/gateway/console/ by embed_console.cmake; do not edit.
#include \"aquifer/gateway/console.h\"

namespace aquifer::gateway {
namespace {
${decls}
constexpr ConsoleFile kFiles[] = {
${entries}};
}  // namespace
std::span<const ConsoleFile> ConsoleFiles() { return kFiles; }
std::string_view ConsoleVersion() { return \"${version}\"; }
}  // namespace aquifer::gateway
")
file(COPY_FILE ${OUT}.tmp ${OUT} ONLY_IF_DIFFERENT)
file(REMOVE ${OUT}.tmp)
