#include "aquifer/drivers/duckdb/plan.h"

#include <algorithm>
#include <array>
#include <cctype>
#include <charconv>

#include <nlohmann/json.hpp>

namespace aquifer::drivers::duckdb {
namespace {

// Plan operators that read rows the plan made itself (CTEs, VALUES lists,
// constant inputs): they carry no "Table" or "Function".
constexpr std::array<std::string_view, 8> kInternalScans = {
    "CTE_SCAN",    "REC_CTE_SCAN",       "DUMMY_SCAN",      "COLUMN_DATA_SCAN",
    "DELIM_SCAN",  "CHUNK_SCAN",         "EXPRESSION_SCAN", "POSITIONAL_SCAN"};

std::string Trim(std::string text) {
  while (!text.empty() && std::isspace(static_cast<unsigned char>(text.back()))) text.pop_back();
  size_t start = 0;
  while (start < text.size() && std::isspace(static_cast<unsigned char>(text[start]))) ++start;
  return text.substr(start);
}

// Identifier-ish tokens of a filter or projection text, lower-cased.
void Tokens(std::string_view text, std::set<std::string>* out) {
  std::string cur;
  for (char c : text) {
    if (std::isalnum(static_cast<unsigned char>(c)) || c == '_' || static_cast<unsigned char>(c) >= 0x80) {
      cur += static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
    } else if (!cur.empty()) {
      out->insert(std::move(cur));
      cur.clear();
    }
  }
  if (!cur.empty()) out->insert(std::move(cur));
}

void CollectStrings(const nlohmann::json& value, std::set<std::string>* out) {
  if (value.is_string()) {
    Tokens(value.get<std::string>(), out);
  } else if (value.is_array()) {
    for (const auto& item : value) CollectStrings(item, out);
  }
}

// The operator's "Estimated Cardinality", 0 when absent or unreadable.
int64_t EstimatedRows(const nlohmann::json& info) {
  auto rows = info.find("Estimated Cardinality");
  if (rows == info.end() || !rows->is_string()) return 0;
  const std::string text = rows->get<std::string>();
  int64_t value = 0;
  auto [end, ec] = std::from_chars(text.data(), text.data() + text.size(), value);
  return ec == std::errc() && end == text.data() + text.size() && value > 0 ? value : 0;
}

Status Collect(const nlohmann::json& node, int depth, std::vector<PlanScan>* scans) {
  if (depth > 10'000) return InvalidArgument("duckdb: the query plan nests too deep to check");
  if (node.is_array()) {
    for (const auto& child : node) AQ_RETURN_IF_ERROR(Collect(child, depth + 1, scans));
    return Status::OK();
  }
  if (!node.is_object()) return InvalidArgument("duckdb: unexpected value in the query plan: {}", node.dump());
  auto name_it = node.find("name");
  if (name_it == node.end() || !name_it->is_string()) {
    return InvalidArgument("duckdb: a query plan operator has no name");
  }
  const std::string name = Trim(name_it->get<std::string>());
  const nlohmann::json* info = nullptr;
  if (auto it = node.find("extra_info"); it != node.end()) {
    if (!it->is_object()) return InvalidArgument("duckdb: operator {} has unreadable details in the query plan", name);
    info = &*it;
  }
  bool is_scan = false;
  if (name == "INOUT_FUNCTION") {
    // A table function fed by rows (LATERAL generate_series(1, t.n)): its
    // name is under "Name", not "Function".
    const nlohmann::json* function = nullptr;
    if (info != nullptr) {
      if (auto it = info->find("Name"); it != info->end() && it->is_string()) function = &*it;
    }
    if (function == nullptr) {
      return InvalidArgument("duckdb: the query plan has an INOUT_FUNCTION that names no function");
    }
    PlanScan scan;
    scan.function = Trim(function->get<std::string>());
    for (char& c : scan.function) c = static_cast<char>(std::toupper(static_cast<unsigned char>(c)));
    scan.estimated_rows = info != nullptr ? EstimatedRows(*info) : 0;
    scans->push_back(std::move(scan));
    is_scan = true;
  } else if (info != nullptr) {
    auto table = info->find("Table");
    auto function = info->find("Function");
    if (table != info->end() || function != info->end()) {
      PlanScan scan;
      if (table != info->end()) {
        if (!table->is_string()) return InvalidArgument("duckdb: operator {} names no readable table", name);
        scan.table = table->get<std::string>();
      } else {
        if (!function->is_string()) return InvalidArgument("duckdb: operator {} names no readable function", name);
        scan.function = Trim(function->get<std::string>());
        for (char& c : scan.function) c = static_cast<char>(std::toupper(static_cast<unsigned char>(c)));
      }
      scan.estimated_rows = EstimatedRows(*info);
      if (auto p = info->find("Projections"); p != info->end()) CollectStrings(*p, &scan.tokens);
      if (auto f = info->find("Filters"); f != info->end()) CollectStrings(*f, &scan.tokens);
      scans->push_back(std::move(scan));
      is_scan = true;
    }
  }
  if (!is_scan && name.find("SCAN") != std::string::npos &&
      std::find(kInternalScans.begin(), kInternalScans.end(), name) == kInternalScans.end()) {
    return InvalidArgument("duckdb: the query plan has a {} that names no table, so what it reads cannot be checked",
                           name);
  }
  auto children = node.find("children");
  if (children == node.end()) return Status::OK();
  if (!children->is_array()) return InvalidArgument("duckdb: operator {} has unreadable children in the query plan", name);
  return Collect(*children, depth + 1, scans);
}

}  // namespace

Result<std::vector<PlanScan>> ParsePlanScans(std::string_view plan_json) {
  nlohmann::json parsed = nlohmann::json::parse(plan_json, nullptr, /*allow_exceptions=*/false);
  if (parsed.is_discarded()) return InvalidArgument("duckdb: the query plan is not readable JSON");
  if (!parsed.is_array() && !parsed.is_object()) return InvalidArgument("duckdb: the query plan has no operators");
  if (parsed.is_array() && parsed.empty()) return InvalidArgument("duckdb: the query plan has no operators");
  std::vector<PlanScan> scans;
  AQ_RETURN_IF_ERROR(Collect(parsed, 0, &scans));
  return scans;
}

bool IsGeneratorFunction(std::string_view function) {
  return function == "RANGE" || function == "GENERATE_SERIES" || function == "UNNEST";
}

}  // namespace aquifer::drivers::duckdb
