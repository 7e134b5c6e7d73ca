// Fuzzes ParseJsonRecord on a fixed schema covering every type. A record that
// parses must encode to Avro, decode back to the same Value, and its JSON
// (WriteJson) must parse back to the same Value; any mismatch aborts.
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <string>
#include <string_view>

#include "aquifer/schema/codec.h"
#include "aquifer/schema/testing_schemas.h"

using namespace aquifer::schema;

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  static const SchemaPtr schema = *Schema::Parse(testing::kRichSchemaJson, {"id"});
  std::string_view json(reinterpret_cast<const char*>(data), size);
  auto value = ParseJsonRecord(*schema, json);
  if (!value.ok()) return 0;
  std::string avro;
  if (!EncodeAvro(*schema, *value, &avro).ok()) std::abort();
  auto decoded = DecodeAvro(*schema, avro);
  if (!decoded.ok()) {
    std::fprintf(stderr, "decode failed: %s\n", decoded.status().ToString().c_str());
    std::abort();
  }
  if (!testing::SameValue(*value, *decoded)) std::abort();
  std::string written;
  WriteJson(*schema, *decoded, &written);
  auto reparsed = ParseJsonRecord(*schema, written);
  if (!reparsed.ok()) {
    std::fprintf(stderr, "re-parse of %s failed: %s\n", written.c_str(), reparsed.status().ToString().c_str());
    std::abort();
  }
  if (!testing::SameValue(*value, *reparsed)) {
    std::fprintf(stderr, "JSON round trip changed the value: %s\n", written.c_str());
    std::abort();
  }
  return 0;
}
