#pragma once

// `aquifer subscribe`: the WebSocket half of the client (Boost.Beast, kept in
// client_subscribe.cc alone because Beast is slow to compile).

#include <string>

#include "aquifer/cli/client_http.h"

namespace aquifer::cli {

// Connects to <server.url>/v1/subscribe, sends
// {"type":"subscribe","cursor":cursor[,"filter":filter]} and prints every
// record of every {"type":"records"} batch as one NDJSON line on stdout. On a
// disconnect it reconnects (backing off up to 5 s) from the cursor of the last
// batch it printed, so no change is lost or repeated. Returns 0 on SIGINT or
// SIGTERM, or when stdout is closed. Throws CommandError: exit 3 when the first
// connection fails, exit 1 for a declined handshake or an {"type":"error"}
// message (both carry the server's code and message). `filter_json` may be
// empty. Only http:// URLs (ws://) are supported.
int RunSubscribe(const ServerOptions& server, const std::string& cursor, const std::string& filter_json);

}  // namespace aquifer::cli
