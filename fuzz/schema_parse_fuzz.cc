// Fuzzes Schema::Parse with arbitrary schema JSON. Checks: no crash, and a
// schema that parses re-parses from its canonical avro_json() to the same text.
#include <cstdint>
#include <cstdlib>
#include <string>
#include <string_view>
#include <vector>

#include "aquifer/schema/schema.h"

namespace {

void DescribeAll(const aquifer::schema::Type& type) {
  (void)type.Describe();
  if (type.items) DescribeAll(*type.items);
  for (const auto& field : type.fields) DescribeAll(*field.type);
}

void Check(std::string_view json, const std::vector<std::string>& key) {
  using aquifer::schema::Schema;
  auto schema = Schema::Parse(json, key);
  if (!schema.ok()) return;
  DescribeAll((*schema)->root());
  auto again = Schema::Parse((*schema)->avro_json(), key);
  if (!again.ok() || (*again)->avro_json() != (*schema)->avro_json()) std::abort();
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  std::string_view json(reinterpret_cast<const char*>(data), size);
  Check(json, {"id"});
  // Also with the first field as key: find `"name":"<x>"` after `"fields"`.
  size_t fields = json.find("\"fields\"");
  if (fields != std::string_view::npos) {
    size_t name = json.find("\"name\"", fields);
    size_t open = name == std::string_view::npos ? name : json.find('"', json.find(':', name));
    size_t close = open == std::string_view::npos ? open : json.find('"', open + 1);
    if (close != std::string_view::npos) {
      Check(json, {std::string(json.substr(open + 1, close - open - 1))});
    }
  }
  return 0;
}
