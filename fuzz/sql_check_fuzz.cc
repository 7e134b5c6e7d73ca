// Fuzzes CheckSql (aquifer/sql) on arbitrary bytes. It must never crash, and
// when it accepts a query:
//  - every reference's byte range lies within the input, in text order, not
//    overlapping the next one;
//  - the text at each range parses back, as `SELECT * FROM <text>`, to exactly
//    that one reference;
//  - RewriteTableRefs (what the engine does) replacing every range by another
//    project.table name leaves a query CheckSql accepts with the same number of
//    references, all of them the replacement.
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <string>
#include <string_view>
#include <vector>

#include "aquifer/sql/sql_check.h"

namespace {

[[noreturn]] void Fail(const char* what, std::string_view input) {
  std::fprintf(stderr, "sql_check_fuzz: %s\ninput: %.*s\n", what, static_cast<int>(input.size()), input.data());
  std::abort();
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string_view sql(reinterpret_cast<const char*>(data), size);
  auto refs = aquifer::sql::CheckSql(sql);
  if (!refs.ok()) {
    if (refs.status().code() != aquifer::StatusCode::kInvalidArgument) Fail("error is not InvalidArgument", sql);
    if (refs.status().message().empty()) Fail("error without a message", sql);
    return 0;
  }
  size_t previous_end = 0;
  for (const aquifer::sql::SqlTableRef& ref : *refs) {
    if (ref.begin >= ref.end || ref.end > sql.size()) Fail("reference range outside the input", sql);
    if (ref.begin < previous_end) Fail("references overlap or are out of order", sql);
    previous_end = ref.end;
    const std::string again = "SELECT * FROM " + std::string(sql.substr(ref.begin, ref.end - ref.begin));
    auto back = aquifer::sql::CheckSql(again);
    if (!back.ok()) Fail(("reference text does not parse back: " + back.status().message()).c_str(), sql);
    if (back->size() != 1 || (*back)[0].project != ref.project || (*back)[0].table != ref.table) {
      Fail("reference text parses back to another reference", sql);
    }
  }
  const std::string rewritten = aquifer::sql::RewriteTableRefs(
      sql, *refs, std::vector<std::string>(refs->size(), "\"x\".\"y\""));
  auto after = aquifer::sql::CheckSql(rewritten);
  if (rewritten.size() <= aquifer::sql::kMaxSqlLength) {
    if (!after.ok()) Fail(("rewritten query refused: " + after.status().message()).c_str(), sql);
    if (after->size() != refs->size()) Fail("rewritten query has another number of references", sql);
    for (const aquifer::sql::SqlTableRef& ref : *after) {
      if (ref.project != "x" || ref.table != "y") Fail("rewritten query names another table", sql);
    }
  }
  return 0;
}
