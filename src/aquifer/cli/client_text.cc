#include "aquifer/cli/client_text.h"

#include <algorithm>
#include <charconv>
#include <cmath>
#include <cstring>

namespace aquifer::cli {

using nlohmann::json;

bool IsValidName(std::string_view name) {
  if (name.empty() || name.size() > 63) return false;
  if (name[0] < 'a' || name[0] > 'z') return false;
  for (char c : name) {
    if (!((c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '_')) return false;
  }
  return true;
}

std::optional<TableRef> ParseTableRef(std::string_view text, std::string* error) {
  size_t dot = text.find('.');
  if (dot == std::string_view::npos) {
    *error = "expected PROJECT.TABLE, got '" + std::string(text) + "'";
    return std::nullopt;
  }
  std::string_view project = text.substr(0, dot);
  std::string_view table = text.substr(dot + 1);
  if (!IsValidName(project)) {
    *error = "bad project name '" + std::string(project) + "' (names are [a-z][a-z0-9_]{0,62})";
    return std::nullopt;
  }
  if (!IsValidName(table)) {
    *error = "bad table name '" + std::string(table) + "' (names are [a-z][a-z0-9_]{0,62})";
    return std::nullopt;
  }
  return TableRef{std::string(project), std::string(table)};
}

std::vector<std::string> SplitList(std::string_view text) {
  std::vector<std::string> out;
  size_t start = 0;
  while (start <= text.size()) {
    size_t comma = text.find(',', start);
    if (comma == std::string_view::npos) comma = text.size();
    std::string_view item = text.substr(start, comma - start);
    while (!item.empty() && item.front() == ' ') item.remove_prefix(1);
    while (!item.empty() && item.back() == ' ') item.remove_suffix(1);
    if (!item.empty()) out.emplace_back(item);
    start = comma + 1;
  }
  return out;
}

std::string UrlEncode(std::string_view text) {
  static constexpr char kHex[] = "0123456789ABCDEF";
  std::string out;
  out.reserve(text.size() * 3);
  for (unsigned char c : text) {
    if ((c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '-' ||
        c == '_' || c == '.' || c == '~') {
      out.push_back(static_cast<char>(c));
    } else {
      out.push_back('%');
      out.push_back(kHex[c >> 4]);
      out.push_back(kHex[c & 15]);
    }
  }
  return out;
}

// --- InputReader ------------------------------------------------------------------------

bool InputReader::Fill() {
  if (error_) return false;
  pos_ = 0;
  len_ = std::fread(buffer_, 1, sizeof(buffer_), file_);
  if (len_ == 0 && std::ferror(file_)) error_ = true;
  return len_ > 0;
}

bool InputReader::ReadLine(std::string* line) {
  line->clear();
  if (Peek() < 0) return false;
  while (true) {
    if (pos_ == len_ && !Fill()) break;
    const char* begin = buffer_ + pos_;
    const char* newline = static_cast<const char*>(std::memchr(begin, '\n', len_ - pos_));
    if (newline != nullptr) {
      size_t n = static_cast<size_t>(newline - begin);
      line->append(begin, n);
      pos_ += n + 1;
      bytes_read_ += n + 1;
      break;
    }
    line->append(begin, len_ - pos_);
    bytes_read_ += len_ - pos_;
    pos_ = len_;
  }
  if (!line->empty() && line->back() == '\r') line->pop_back();
  return true;
}

// --- CsvReader --------------------------------------------------------------------------

bool CsvReader::Next(std::vector<CsvCell>* cells, int64_t* line, std::string* error) {
  cells->clear();
  error->clear();
  if (!started_) {
    started_ = true;
    // A UTF-8 byte order mark (EF BB BF) before the header is not data.
    if (input_->Peek() == 0xEF) {
      input_->Get();
      if (input_->Get() != 0xBB || input_->Get() != 0xBF) {
        *error = "line 1: invalid UTF-8 at the start of the file";
        return false;
      }
    }
  }
  // Skip blank lines between records.
  while (true) {
    int c = input_->Peek();
    if (c == '\n') {
      input_->Get();
      ++line_;
    } else if (c == '\r') {
      input_->Get();
    } else {
      break;
    }
  }
  if (input_->Peek() < 0) return false;
  *line = line_;
  CsvCell cell;
  while (true) {
    int c = input_->Get();
    if (c < 0) {
      cells->push_back(std::move(cell));
      return true;
    }
    if (c == '"' && cell.text.empty() && !cell.quoted) {
      cell.quoted = true;
      int64_t quote_line = line_;
      while (true) {
        int q = input_->Get();
        if (q < 0) {
          *error = "line " + std::to_string(quote_line) + ": unterminated quoted field";
          return false;
        }
        if (q == '"') {
          if (input_->Peek() == '"') {
            input_->Get();
            cell.text.push_back('"');
            continue;
          }
          break;
        }
        if (q == '\n') ++line_;
        cell.text.push_back(static_cast<char>(q));
      }
      int after = input_->Peek();
      if (after >= 0 && after != sep_ && after != '\n' && after != '\r') {
        *error = "line " + std::to_string(line_) +
                 ": unexpected character after a closing quote (quotes inside a quoted field are "
                 "written \"\")";
        return false;
      }
      continue;
    }
    if (c == sep_) {
      cells->push_back(std::move(cell));
      cell = CsvCell{};
      continue;
    }
    if (c == '\r' && input_->Peek() == '\n') continue;
    if (c == '\n') {
      ++line_;
      cells->push_back(std::move(cell));
      return true;
    }
    if (cell.quoted) {
      *error = "line " + std::to_string(line_) + ": unexpected character after a closing quote";
      return false;
    }
    cell.text.push_back(static_cast<char>(c));
  }
}

// --- CsvSchema --------------------------------------------------------------------------

namespace {

const json* Member(const json& object, const char* name) {
  if (!object.is_object()) return nullptr;
  auto it = object.find(name);
  return it == object.end() ? nullptr : &*it;
}

std::string StringMember(const json& object, const char* name) {
  const json* value = Member(object, name);
  return value != nullptr && value->is_string() ? value->get<std::string>() : std::string();
}

// Named types (enum, fixed, record) seen so far, by full and short name.
using NamedKinds = std::map<std::string, CellKind, std::less<>>;

CellKind KindOf(const json& type, const std::string& enclosing_namespace, NamedKinds* named);

void RememberNamed(const json& type, const std::string& enclosing_namespace, CellKind kind,
                   NamedKinds* named) {
  std::string name = StringMember(type, "name");
  if (name.empty()) return;
  std::string space = StringMember(type, "namespace");
  if (space.empty() && name.find('.') == std::string::npos) space = enclosing_namespace;
  std::string full = name.find('.') != std::string::npos || space.empty() ? name : space + "." + name;
  (*named)[full] = kind;
  (*named)[full.substr(full.rfind('.') + 1)] = kind;
}

CellKind KindOfPrimitive(std::string_view name, const NamedKinds& named, bool* known) {
  *known = true;
  if (name == "boolean") return CellKind::kBoolean;
  if (name == "int" || name == "long") return CellKind::kInteger;
  if (name == "float" || name == "double") return CellKind::kFloat;
  if (name == "string" || name == "bytes") return CellKind::kString;
  if (name == "null") return CellKind::kNull;
  auto it = named.find(name);
  if (it != named.end()) return it->second;
  size_t dot = name.rfind('.');
  if (dot != std::string_view::npos) {
    it = named.find(name.substr(dot + 1));
    if (it != named.end()) return it->second;
  }
  *known = false;
  return CellKind::kString;
}

CellKind KindOf(const json& type, const std::string& enclosing_namespace, NamedKinds* named) {
  if (type.is_string()) {
    bool known = false;
    return KindOfPrimitive(type.get<std::string>(), *named, &known);
  }
  if (!type.is_object()) return CellKind::kJson;
  std::string base = StringMember(type, "type");
  std::string logical = StringMember(type, "logicalType");
  if (logical == "decimal") return CellKind::kDecimal;
  if (base == "enum" || base == "fixed") {
    RememberNamed(type, enclosing_namespace, CellKind::kString, named);
    return CellKind::kString;
  }
  if (base == "record") {
    RememberNamed(type, enclosing_namespace, CellKind::kJson, named);
    std::string space = StringMember(type, "namespace");
    if (space.empty()) space = enclosing_namespace;
    if (const json* fields = Member(type, "fields"); fields != nullptr && fields->is_array()) {
      for (const json& field : *fields) {
        if (const json* field_type = Member(field, "type")) KindOf(*field_type, space, named);
      }
    }
    return CellKind::kJson;
  }
  if (base == "array" || base == "map") {
    if (const json* items = Member(type, "items")) KindOf(*items, enclosing_namespace, named);
    if (const json* values = Member(type, "values")) KindOf(*values, enclosing_namespace, named);
    return CellKind::kJson;
  }
  bool known = false;
  return KindOfPrimitive(base, *named, &known);
}

std::string Lower(std::string_view text) {
  std::string out(text);
  for (char& c : out) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  return out;
}

}  // namespace

std::optional<CsvSchema> CsvSchema::FromDescription(const json& description, std::string* error) {
  const json* schema = Member(description, "schema");
  if (schema == nullptr) {
    *error = "the table description has no \"schema\"";
    return std::nullopt;
  }
  if (schema->is_string()) {
    json parsed = json::parse(schema->get<std::string>(), nullptr, /*allow_exceptions=*/false);
    if (parsed.is_discarded()) {
      *error = "the table's schema is not valid JSON";
      return std::nullopt;
    }
    return FromAvro(parsed, error);
  }
  return FromAvro(*schema, error);
}

std::optional<CsvSchema> CsvSchema::FromAvro(const json& schema, std::string* error) {
  const json* fields = Member(schema, "fields");
  if (fields == nullptr || !fields->is_array()) {
    *error = "the table's schema is not an Avro record (no \"fields\")";
    return std::nullopt;
  }
  CsvSchema out;
  NamedKinds named;
  std::string space = StringMember(schema, "namespace");
  std::string name = StringMember(schema, "name");
  if (space.empty() && name.find('.') != std::string::npos) space = name.substr(0, name.rfind('.'));
  for (const json& field : *fields) {
    std::string field_name = StringMember(field, "name");
    const json* type = Member(field, "type");
    if (field_name.empty() || type == nullptr) continue;
    CsvColumnType column;
    if (type->is_array()) {
      // A nullable union: ["null", T] or [T, "null"].
      for (const json& branch : *type) {
        if (branch.is_string() && branch.get<std::string>() == "null") {
          column.nullable = true;
        } else {
          column.kind = KindOf(branch, space, &named);
        }
      }
      if (type->size() == 1 && column.nullable) column.kind = CellKind::kNull;
    } else {
      column.kind = KindOf(*type, space, &named);
      column.nullable = column.kind == CellKind::kNull;
    }
    out.fields_[field_name] = column;
  }
  return out;
}

std::optional<CsvColumnType> CsvSchema::Find(std::string_view field) const {
  auto it = fields_.find(field);
  if (it == fields_.end()) {
    if (field == "@timestamp") return CsvColumnType{CellKind::kInteger, false};
    return std::nullopt;
  }
  return it->second;
}

std::optional<json> ConvertCell(const CsvCell& cell, const std::optional<CsvColumnType>& type) {
  if (!type) return json(cell.text);
  const std::string& text = cell.text;
  if (text.empty() && !cell.quoted) {
    if (type->nullable || type->kind == CellKind::kNull) return json(nullptr);
    if (type->kind == CellKind::kString) return json(std::string());
    return std::nullopt;
  }
  switch (type->kind) {
    case CellKind::kBoolean: {
      std::string lower = Lower(text);
      if (lower == "true" || lower == "1" || lower == "yes" || lower == "t" || lower == "y") return json(true);
      if (lower == "false" || lower == "0" || lower == "no" || lower == "f" || lower == "n") return json(false);
      return json(text);
    }
    case CellKind::kInteger: {
      int64_t value = 0;
      const char* begin = text.data();
      const char* end = text.data() + text.size();
      auto [ptr, ec] = std::from_chars(begin, end, value);
      if (ec == std::errc() && ptr == end) return json(value);
      return json(text);
    }
    case CellKind::kFloat: {
      std::string lower = Lower(text);
      if (lower == "nan") return json("NaN");
      if (lower == "inf" || lower == "infinity" || lower == "+inf" || lower == "+infinity") return json("Infinity");
      if (lower == "-inf" || lower == "-infinity") return json("-Infinity");
      double value = 0;
      const char* begin = text.data();
      const char* end = text.data() + text.size();
      if (begin != end && *begin == '+') ++begin;
      auto [ptr, ec] = std::from_chars(begin, end, value);
      if (ec == std::errc() && ptr == end && std::isfinite(value)) return json(value);
      return json(text);
    }
    case CellKind::kJson: {
      json parsed = json::parse(text, nullptr, /*allow_exceptions=*/false);
      if (parsed.is_discarded()) return json(text);
      return parsed;
    }
    case CellKind::kNull:
      if (Lower(text) == "null") return json(nullptr);
      return json(text);
    case CellKind::kDecimal:
    case CellKind::kString:
      break;
  }
  return json(text);
}

json CsvSchema::ToRecord(const std::vector<std::string>& header,
                         const std::vector<CsvCell>& cells) const {
  json record = json::object();
  for (size_t column_idx = 0; column_idx < header.size() && column_idx < cells.size(); ++column_idx) {
    std::optional<json> value = ConvertCell(cells[column_idx], Find(header[column_idx]));
    if (value) record[header[column_idx]] = std::move(*value);
  }
  return record;
}

// --- Tables -----------------------------------------------------------------------------

namespace {

// Number of UTF-8 code points (continuation bytes are not counted).
size_t DisplayWidth(std::string_view text) {
  size_t width = 0;
  for (unsigned char c : text) {
    if ((c & 0xC0) != 0x80) ++width;
  }
  return width;
}

// The first `width` code points of text.
std::string_view PrefixByWidth(std::string_view text, size_t width) {
  size_t seen = 0;
  for (size_t i = 0; i < text.size(); ++i) {
    if ((static_cast<unsigned char>(text[i]) & 0xC0) != 0x80) {
      if (seen == width) return text.substr(0, i);
      ++seen;
    }
  }
  return text;
}

bool LooksNumeric(std::string_view text) {
  if (text.empty() || text == "null") return true;
  double value = 0;
  const char* begin = text.data();
  const char* end = text.data() + text.size();
  auto [ptr, ec] = std::from_chars(begin, end, value);
  return ec == std::errc() && ptr == end;
}

}  // namespace

std::string CellText(const json& value) {
  std::string text;
  if (value.is_string()) {
    text = value.get<std::string>();
  } else if (value.is_null()) {
    text = "null";
  } else {
    text = value.dump(-1, ' ', false, json::error_handler_t::replace);
  }
  for (char& c : text) {
    if (static_cast<unsigned char>(c) < 0x20 || c == 0x7F) c = ' ';
  }
  return text;
}

std::string RenderTable(const std::vector<std::string>& headers,
                        const std::vector<std::vector<std::string>>& rows, size_t max_cell_width) {
  if (max_cell_width < 2) max_cell_width = 2;
  const size_t columns = headers.size();
  auto clip = [&](std::string_view text) -> std::string {
    if (DisplayWidth(text) <= max_cell_width) return std::string(text);
    return std::string(PrefixByWidth(text, max_cell_width - 1)) + "\u2026";
  };
  std::vector<std::vector<std::string>> cells;
  cells.reserve(rows.size() + 1);
  cells.emplace_back();
  for (const std::string& header : headers) cells.back().push_back(clip(header));
  std::vector<bool> numeric(columns, !rows.empty());
  for (const auto& row : rows) {
    cells.emplace_back();
    for (size_t column_idx = 0; column_idx < columns; ++column_idx) {
      std::string_view text = column_idx < row.size() ? std::string_view(row[column_idx]) : "";
      if (!LooksNumeric(text)) numeric[column_idx] = false;
      cells.back().push_back(clip(text));
    }
  }
  std::vector<size_t> widths(columns, 0);
  for (const auto& line : cells) {
    for (size_t column_idx = 0; column_idx < columns; ++column_idx) {
      widths[column_idx] = std::max(widths[column_idx], DisplayWidth(line[column_idx]));
    }
  }
  std::string out;
  auto emit = [&](const std::vector<std::string>& line, bool header) {
    std::string text;
    for (size_t column_idx = 0; column_idx < columns; ++column_idx) {
      if (column_idx > 0) text += "  ";
      size_t pad = widths[column_idx] - DisplayWidth(line[column_idx]);
      if (numeric[column_idx] && !header) {
        text.append(pad, ' ');
        text += line[column_idx];
      } else {
        text += line[column_idx];
        text.append(pad, ' ');
      }
    }
    while (!text.empty() && text.back() == ' ') text.pop_back();
    out += text;
    out += '\n';
  };
  emit(cells[0], true);
  std::vector<std::string> rule;
  for (size_t column_idx = 0; column_idx < columns; ++column_idx) rule.emplace_back(widths[column_idx], '-');
  emit(rule, true);
  for (size_t row_idx = 1; row_idx < cells.size(); ++row_idx) emit(cells[row_idx], false);
  return out;
}

std::string RenderRecords(const std::vector<json>& records, size_t max_cell_width) {
  std::vector<std::string> headers;
  bool has_timestamp = false;
  for (const json& record : records) {
    if (!record.is_object()) continue;
    for (auto it = record.begin(); it != record.end(); ++it) {
      if (it.key() == "@timestamp") {
        has_timestamp = true;
      } else if (std::find(headers.begin(), headers.end(), it.key()) == headers.end()) {
        headers.push_back(it.key());
      }
    }
  }
  if (has_timestamp) headers.push_back("@timestamp");
  std::vector<std::vector<std::string>> rows;
  rows.reserve(records.size());
  for (const json& record : records) {
    std::vector<std::string> row;
    for (const std::string& header : headers) {
      auto it = record.is_object() ? record.find(header) : record.end();
      row.push_back(it == record.end() ? std::string() : CellText(*it));
    }
    rows.push_back(std::move(row));
  }
  return RenderTable(headers, rows, max_cell_width);
}

std::string HumanBytes(uint64_t bytes) {
  static constexpr const char* kUnits[] = {"B", "KiB", "MiB", "GiB", "TiB", "PiB"};
  if (bytes < 1024) return std::to_string(bytes) + " B";
  double value = static_cast<double>(bytes);
  size_t unit = 0;
  while (value >= 1024 && unit + 1 < std::size(kUnits)) {
    value /= 1024;
    ++unit;
  }
  char buffer[32];
  std::snprintf(buffer, sizeof(buffer), "%.1f %s", value, kUnits[unit]);
  return buffer;
}

std::string WithThousands(int64_t value) {
  std::string digits = std::to_string(value < 0 ? -static_cast<uint64_t>(value) : static_cast<uint64_t>(value));
  std::string out;
  for (size_t i = 0; i < digits.size(); ++i) {
    if (i > 0 && (digits.size() - i) % 3 == 0) out.push_back(',');
    out.push_back(digits[i]);
  }
  return value < 0 ? "-" + out : out;
}

std::string ProgressLine(int64_t records, double seconds, double percent) {
  std::string out;
  if (percent >= 0) {
    constexpr int kBarWidth = 24;
    double clamped = std::clamp(percent, 0.0, 100.0);
    int filled = static_cast<int>(clamped / 100.0 * kBarWidth);
    out += '[';
    out.append(static_cast<size_t>(filled), '#');
    out.append(static_cast<size_t>(kBarWidth - filled), '.');
    char pct[16];
    std::snprintf(pct, sizeof(pct), "] %3d%%  ", static_cast<int>(clamped));
    out += pct;
  }
  out += WithThousands(records) + " records";
  if (seconds > 0) {
    out += "  " + WithThousands(static_cast<int64_t>(static_cast<double>(records) / seconds)) + " rec/s";
  }
  return out;
}

}  // namespace aquifer::cli
