#pragma once

// The pure pieces of the client commands: no network, no terminal. Everything
// here is deterministic and unit-tested in cli_test.cc.
//
//   TableRef          "project.table" → {project, table}
//   InputReader       buffered bytes from a FILE* (a file or stdin), counting bytes read
//   CsvReader         RFC 4180 records from an InputReader (quotes, "" escapes,
//                     embedded newlines, CRLF), each with the line it starts on
//   CsvSchema         a table's top-level field types, from its description,
//                     used to turn CSV cells into typed JSON values
//   RenderTable       an aligned text table with truncated cells
//
// None of these classes is thread-safe; use one per thread.

#include <cstdint>
#include <cstdio>
#include <map>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include <nlohmann/json.hpp>

namespace aquifer::cli {

// "project.table", both names `[a-z][a-z0-9_]{0,62}` (DESIGN.md). Returns
// nullopt and sets *error for anything else.
struct TableRef {
  std::string project;
  std::string table;
  std::string ToString() const { return project + "." + table; }
};
std::optional<TableRef> ParseTableRef(std::string_view text, std::string* error);
bool IsValidName(std::string_view name);

// Splits "a,b, c" into {"a","b","c"}; empty items are dropped.
std::vector<std::string> SplitList(std::string_view text);

// Percent-encodes a query-string value (RFC 3986 unreserved characters kept).
std::string UrlEncode(std::string_view text);

// Buffered reading of a FILE* that may be a pipe. Does not own the FILE*.
class InputReader {
 public:
  explicit InputReader(std::FILE* file) : file_(file) {}
  // Next byte, or -1 at end of input (or on a read error; see error()).
  int Get() {
    if (pos_ == len_ && !Fill()) return -1;
    ++bytes_read_;
    return static_cast<unsigned char>(buffer_[pos_++]);
  }
  int Peek() {
    if (pos_ == len_ && !Fill()) return -1;
    return static_cast<unsigned char>(buffer_[pos_]);
  }
  // One line without its "\n" (and without a trailing "\r"). False at end of input.
  bool ReadLine(std::string* line);
  uint64_t bytes_read() const { return bytes_read_; }
  bool error() const { return error_; }

 private:
  bool Fill();
  std::FILE* file_;
  char buffer_[1 << 16];
  size_t pos_ = 0;
  size_t len_ = 0;
  uint64_t bytes_read_ = 0;
  bool error_ = false;
};

// One CSV cell. `quoted` tells an empty unquoted cell (null for nullable
// fields) from a quoted empty string ("").
struct CsvCell {
  std::string text;
  bool quoted = false;
};

// RFC 4180 CSV: fields separated by `separator`, optionally in double quotes;
// inside quotes `""` is one quote and newlines are part of the value. Lines end
// in LF or CRLF. A UTF-8 byte order mark at the start is skipped.
class CsvReader {
 public:
  explicit CsvReader(InputReader* input, char separator = ',') : input_(input), sep_(separator) {}
  // Reads the next record into *cells and the 1-based line it starts on into
  // *line. Returns false at end of input, or on a malformed record with
  // *error set ("line 7: unterminated quoted field"). Blank lines are skipped.
  bool Next(std::vector<CsvCell>* cells, int64_t* line, std::string* error);

 private:
  InputReader* input_;
  char sep_;
  int64_t line_ = 1;
  bool started_ = false;
};

// The JSON type a CSV cell becomes, from the field's Avro type.
enum class CellKind : uint8_t {
  kBoolean,  // true/false, 1/0, yes/no, t/f (any case)
  kInteger,  // int, long, timestamp-millis: an exact int64
  kFloat,    // float, double: a number; NaN/Infinity/-Infinity as the codec's strings
  kString,   // string, uuid, enum, bytes (base64), fixed (base64)
  kDecimal,  // decimal: sent as a string so no digit is lost
  kJson,     // array, record: the cell holds JSON text
  kNull,     // the type "null"
};

struct CsvColumnType {
  CellKind kind = CellKind::kString;
  bool nullable = false;
};

// The top-level fields of a table's Avro schema, for converting CSV cells.
class CsvSchema {
 public:
  // `description` is the table description (GET /v1/projects/{p}/tables/{t});
  // its "schema" is the Avro schema as a JSON object or as a string of JSON.
  // Returns nullopt with *error when there is no usable schema.
  static std::optional<CsvSchema> FromDescription(const nlohmann::json& description,
                                                  std::string* error);
  // Same, from the Avro schema itself.
  static std::optional<CsvSchema> FromAvro(const nlohmann::json& schema, std::string* error);

  // nullopt for a column the schema does not know (its cells are sent as
  // strings; the server names the unknown field).
  std::optional<CsvColumnType> Find(std::string_view field) const;

  // Builds one record from a CSV row. Cells are converted by their column's
  // type; an empty unquoted cell is null for a nullable field, "" for a string
  // field, and omitted otherwise (so the field's default applies, or the server
  // reports it missing). A cell that does not convert is sent as the string it
  // is, so the server's validation names the field and the problem.
  nlohmann::json ToRecord(const std::vector<std::string>& header,
                          const std::vector<CsvCell>& cells) const;

 private:
  std::map<std::string, CsvColumnType, std::less<>> fields_;
};

// Converts one cell; nullopt means "omit the field".
std::optional<nlohmann::json> ConvertCell(const CsvCell& cell,
                                          const std::optional<CsvColumnType>& type);

// Text for one JSON value in a table cell: strings without quotes, null as
// "null", nested values as compact JSON; control characters become spaces.
std::string CellText(const nlohmann::json& value);

// An aligned table:
//
//   id  name      score
//   --  --------  -----
//    1  ada        9.5
//    2  grace…    10
//
// Columns whose cells are all numbers (or null) are right-aligned. Cells wider
// than max_cell_width display columns are cut and end in "…". Widths count
// UTF-8 code points. Every line ends in "\n".
std::string RenderTable(const std::vector<std::string>& headers,
                        const std::vector<std::vector<std::string>>& rows,
                        size_t max_cell_width = 40);

// Rows of JSON objects as a table: the columns are the keys in order of first
// appearance, with "@timestamp" last.
std::string RenderRecords(const std::vector<nlohmann::json>& records, size_t max_cell_width = 40);

// "1.5 KiB", "3.0 MiB", "12 B".
std::string HumanBytes(uint64_t bytes);
// "1,234,567".
std::string WithThousands(int64_t value);

// The progress line of `write` (no "\r", no newline):
//   "[#########.........]  45%  12,345 records  23,456 rec/s"
// percent < 0 means unknown (stdin): the bar is left out.
std::string ProgressLine(int64_t records, double seconds, double percent);

}  // namespace aquifer::cli
