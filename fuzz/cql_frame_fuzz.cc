// Fuzz target: bytes as the CQL client reads them from a Cassandra node (a
// frame header, then its body), through the decoders of
// drivers/cassandra/cql/protocol.h: header, response prefix (tracing id,
// warnings, custom payload), RESULT (rows, prepared, schema change...) and
// ERROR bodies. Checked: no crash or sanitizer report; a malformed input is
// Corruption, never another code; decoded rows have one cell per column.
#include <cstdint>
#include <cstdlib>
#include <string_view>

#include "aquifer/drivers/cassandra/cql/protocol.h"

namespace cql = aquifer::drivers::cassandra::cql;

namespace {

void CheckError(const aquifer::Status& status) {
  if (status.code() != aquifer::StatusCode::kCorruption) std::abort();
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  std::string_view input(reinterpret_cast<const char*>(data), size);
  auto header = cql::DecodeHeader(input);
  if (!header.ok()) {
    CheckError(header.status());
    return 0;
  }
  // The body: what follows the header (the fuzzer need not match the length).
  std::string_view body = input.substr(cql::kHeaderSize);
  if (static_cast<size_t>(header->length) < body.size()) body = body.substr(0, header->length);
  auto payload = cql::SkipResponsePrefix(header->flags, body);
  if (!payload.ok()) {
    CheckError(payload.status());
    return 0;
  }
  auto result = cql::DecodeResult(*payload);
  if (result.ok()) {
    if (result->kind == cql::ResultKind::kRows) {
      const auto& rows = result->rows;
      if (!rows.metadata.no_metadata && rows.metadata.columns.size() != static_cast<size_t>(rows.metadata.column_count)) std::abort();
      for (const cql::Row& row : rows.rows) {
        if (row.size() != static_cast<size_t>(rows.metadata.column_count)) std::abort();
        for (const auto& cell : row) {
          if (cell) {
            (void)cql::DecodeBigint(*cell);
            (void)cql::DecodeInt(*cell);
            (void)cql::DecodeBoolean(*cell);
          }
        }
      }
    }
  } else {
    CheckError(result.status());
  }
  auto error = cql::DecodeError(*payload);
  if (error.ok()) {
    aquifer::Status status = cql::StatusFromServerError(*error, "fuzz");
    if (status.ok()) std::abort();
  } else {
    CheckError(error.status());
  }
  return 0;
}
