#include "aquifer/sql/sql_check.h"

#include <algorithm>
#include <array>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

// How the check works, and why it can be trusted.
//
// The tokenizer follows the lexer DuckDB inherited from Postgres, because the
// only thing that matters is that we and DuckDB cut the text into the same
// tokens: standard strings ('' escapes, backslash is a plain character),
// E'' strings (backslash escapes), dollar quotes ($$...$$, $tag$...$tag$),
// quoted identifiers ("" escapes), -- comments to the end of the line, nested
// /* */ comments, and identifiers that may contain '$' after the first
// character. U&"..." and U&'...' (with an optional UESCAPE 'c' after them)
// are one token each, as in DuckDB's lexer; a U&"..." identifier is then
// refused, because its name depends on escapes the checker does not decode
// (DuckDB 1.4.4 refuses them too, but the check must not rely on that).
// Numbers follow DuckDB's rules: `0x1f` is the number 0 and the identifier
// x1f, not one hex literal. Anything the tokenizer is unsure of (NUL,
// backticks, backslashes outside strings, unterminated strings or comments)
// is refused.
//
// The scan then walks the tokens once with a stack of bracket frames. A table
// position is the token after FROM or JOIN, after a comma while a FROM list
// is open at the same level, after TABLE, and after PIVOT/UNPIVOT written as
// a statement. FROM is a table keyword at every level except inside
// EXTRACT/SUBSTRING/TRIM/OVERLAY arguments and after IS [NOT] DISTINCT. A
// clause keyword (WHERE, GROUP, ORDER, UNION, SELECT ...) at the same level
// closes the FROM list. Mistakes in this walk err towards refusing: a comma
// wrongly taken for a FROM-list comma makes its next token a table name,
// which is either refused or resolved (and permission-checked) as one. The
// engine's second line of defence, the warehouse's own list of scanned
// tables, catches what a lexical check cannot.

namespace aquifer::sql {
namespace {

enum class TokenKind : uint8_t {
  kIdent,        // bare identifier or keyword; `text` lower-cased
  kQuotedIdent,  // "..."; `text` unquoted
  kUnicodeIdent, // U&"..." [UESCAPE 'c']: refused by the checker
  kString,       // any string literal (standard, E'', dollar-quoted)
  kNumber,
  kParam,        // ?, $1, $name
  kOpen,         // ( [ {   (`text` is the bracket)
  kClose,        // ) ] }
  kComma,
  kSemicolon,
  kDot,
  kOp,           // any other operator character
};

struct Token {
  TokenKind kind;
  size_t begin = 0, end = 0;
  std::string text;
};

bool IsSpace(unsigned char c) {
  return c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\f' || c == '\v';
}
bool IsIdentStart(unsigned char c) {
  return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || c == '_' || c >= 0x80;
}
bool IsIdentChar(unsigned char c) { return IsIdentStart(c) || (c >= '0' && c <= '9') || c == '$'; }
bool IsDigit(unsigned char c) { return c >= '0' && c <= '9'; }
bool IsOpChar(unsigned char c) {
  return std::string_view("+-*/%<>=~!@#^&|:").find(static_cast<char>(c)) != std::string_view::npos;
}

std::string Lower(std::string_view text) {
  std::string out(text);
  for (char& c : out) {
    if (c >= 'A' && c <= 'Z') c = static_cast<char>(c - 'A' + 'a');
  }
  return out;
}

// A short, printable excerpt of the input for messages.
std::string Excerpt(std::string_view sql, size_t begin, size_t end) {
  std::string out;
  for (size_t i = begin; i < end && i < sql.size() && out.size() < 40; ++i) {
    const unsigned char c = static_cast<unsigned char>(sql[i]);
    out.push_back(c < 0x20 || c == 0x7F ? ' ' : static_cast<char>(c));
  }
  if (end - begin > 40) out += "...";
  return out;
}

// Past blanks and -- comments (the lexer's {whitespace}) from `i`.
size_t SkipWhitespace(std::string_view sql, size_t i) {
  while (i < sql.size()) {
    if (IsSpace(static_cast<unsigned char>(sql[i]))) {
      ++i;
    } else if (sql[i] == '-' && i + 1 < sql.size() && sql[i + 1] == '-') {
      while (i < sql.size() && sql[i] != '\n' && sql[i] != '\r') ++i;
    } else {
      break;
    }
  }
  return i;
}

// After a U& string or identifier ending at `i`: the end of an optional
// `UESCAPE 'c'` (c any byte but a quote), or `i` when there is none.
size_t SkipUescape(std::string_view sql, size_t i) {
  size_t k = SkipWhitespace(sql, i);
  constexpr std::string_view kWord = "uescape";
  if (k + kWord.size() > sql.size()) return i;
  for (size_t m = 0; m < kWord.size(); ++m) {
    char ch = sql[k + m];
    if (ch >= 'A' && ch <= 'Z') ch = static_cast<char>(ch - 'A' + 'a');
    if (ch != kWord[m]) return i;
  }
  k = SkipWhitespace(sql, k + kWord.size());
  if (k + 2 < sql.size() && sql[k] == '\'' && sql[k + 1] != '\'' && sql[k + 2] == '\'') return k + 3;
  return i;
}

Result<std::vector<Token>> Tokenize(std::string_view sql) {
  std::vector<Token> tokens;
  const size_t n = sql.size();
  size_t i = 0;
  auto at = [&](size_t k) -> unsigned char { return k < n ? static_cast<unsigned char>(sql[k]) : 0; };
  while (i < n) {
    const unsigned char c = at(i);
    const size_t start = i;
    if (IsSpace(c)) {
      ++i;
      continue;
    }
    if (c == '-' && at(i + 1) == '-') {
      while (i < n && at(i) != '\n' && at(i) != '\r') ++i;
      continue;
    }
    if (c == '/' && at(i + 1) == '*') {
      int depth = 0;
      while (i < n) {
        if (at(i) == '/' && at(i + 1) == '*') {
          ++depth;
          i += 2;
        } else if (at(i) == '*' && at(i + 1) == '/') {
          --depth;
          i += 2;
          if (depth == 0) break;
        } else {
          ++i;
        }
      }
      if (depth != 0) return InvalidArgument("unterminated comment starting at offset {}", start);
      continue;
    }
    if ((c == 'u' || c == 'U') && at(i + 1) == '&' && (at(i + 2) == '"' || at(i + 2) == '\'')) {
      // U&"..." and U&'...': the body doubles its quote like "..." and '...'
      // (no backslash escapes at this level), and an optional UESCAPE 'c'
      // after it belongs to the same token, as in DuckDB's lexer.
      const unsigned char quote = at(i + 2);
      i += 3;
      bool closed = false;
      while (i < n) {
        if (at(i) == quote) {
          if (at(i + 1) == quote) {
            i += 2;
          } else {
            ++i;
            closed = true;
            break;
          }
        } else {
          ++i;
        }
      }
      if (!closed) {
        return InvalidArgument("unterminated {} starting at offset {}",
                               quote == '"' ? "quoted identifier" : "string", start);
      }
      i = SkipUescape(sql, i);
      tokens.push_back({quote == '"' ? TokenKind::kUnicodeIdent : TokenKind::kString, start, i, {}});
      continue;
    }
    const bool escape_string = (c == 'e' || c == 'E') && at(i + 1) == '\'';
    if (c == '\'' || escape_string) {
      i += escape_string ? 2 : 1;
      bool closed = false;
      while (i < n) {
        if (escape_string && at(i) == '\\') {
          i += 2;
        } else if (at(i) == '\'') {
          if (at(i + 1) == '\'') {
            i += 2;
          } else {
            ++i;
            closed = true;
            break;
          }
        } else {
          ++i;
        }
      }
      if (!closed) return InvalidArgument("unterminated string starting at offset {}", start);
      tokens.push_back({TokenKind::kString, start, i, {}});
      continue;
    }
    if (c == '"') {
      std::string name;
      ++i;
      bool closed = false;
      while (i < n) {
        if (at(i) == '"') {
          if (at(i + 1) == '"') {
            name.push_back('"');
            i += 2;
          } else {
            ++i;
            closed = true;
            break;
          }
        } else {
          name.push_back(sql[i]);
          ++i;
        }
      }
      if (!closed) return InvalidArgument("unterminated quoted identifier starting at offset {}", start);
      tokens.push_back({TokenKind::kQuotedIdent, start, i, std::move(name)});
      continue;
    }
    if (c == '$') {
      if (IsDigit(at(i + 1))) {
        i += 1;
        while (IsDigit(at(i))) ++i;
        tokens.push_back({TokenKind::kParam, start, i, {}});
        continue;
      }
      size_t tag_end = i + 1;
      if (IsIdentStart(at(tag_end))) {
        while (tag_end < n && IsIdentChar(at(tag_end)) && at(tag_end) != '$') ++tag_end;
      }
      if (at(tag_end) == '$') {
        const std::string_view delimiter = sql.substr(i, tag_end + 1 - i);
        const size_t close = sql.find(delimiter, tag_end + 1);
        if (close == std::string_view::npos) {
          return InvalidArgument("unterminated dollar-quoted string starting at offset {}", start);
        }
        i = close + delimiter.size();
        tokens.push_back({TokenKind::kString, start, i, {}});
        continue;
      }
      if (tag_end > i + 1) {  // $name: a named parameter
        i = tag_end;
        tokens.push_back({TokenKind::kParam, start, i, {}});
        continue;
      }
      return InvalidArgument("unexpected character '$' at offset {}", start);
    }
    if (IsIdentStart(c)) {
      while (i < n && IsIdentChar(at(i))) ++i;
      tokens.push_back({TokenKind::kIdent, start, i, Lower(sql.substr(start, i - start))});
      continue;
    }
    if (IsDigit(c) || (c == '.' && IsDigit(at(i + 1)))) {
      // DuckDB's lexer: integer = digit ('_'? digit)*, then an optional
      // fraction and exponent. There is no 0x/0b literal at this level:
      // `0x1f` is the number 0 followed by the identifier x1f.
      auto integer = [&] {
        if (!IsDigit(at(i))) return;
        ++i;
        while (IsDigit(at(i)) || (at(i) == '_' && IsDigit(at(i + 1)))) ++i;
      };
      integer();
      if (at(i) == '.' && at(i + 1) != '.') {
        ++i;
        integer();
      }
      if ((at(i) == 'e' || at(i) == 'E') &&
          (IsDigit(at(i + 1)) || ((at(i + 1) == '+' || at(i + 1) == '-') && IsDigit(at(i + 2))))) {
        i += (at(i + 1) == '+' || at(i + 1) == '-') ? 2 : 1;
        integer();
      }
      tokens.push_back({TokenKind::kNumber, start, i, {}});
      continue;
    }
    ++i;
    switch (c) {
      case '(':
      case '[':
      case '{':
        tokens.push_back({TokenKind::kOpen, start, i, std::string(1, static_cast<char>(c))});
        break;
      case ')':
      case ']':
      case '}':
        tokens.push_back({TokenKind::kClose, start, i, std::string(1, static_cast<char>(c))});
        break;
      case ',':
        tokens.push_back({TokenKind::kComma, start, i, {}});
        break;
      case ';':
        tokens.push_back({TokenKind::kSemicolon, start, i, {}});
        break;
      case '.':
        tokens.push_back({TokenKind::kDot, start, i, {}});
        break;
      case '?':
        tokens.push_back({TokenKind::kParam, start, i, {}});
        break;
      default:
        if (!IsOpChar(c)) {
          if (c < 0x20 || c == 0x7F) {
            return InvalidArgument("unexpected control character 0x{:02x} at offset {}", c, start);
          }
          return InvalidArgument("unexpected character '{}' at offset {}", static_cast<char>(c), start);
        }
        tokens.push_back({TokenKind::kOp, start, i, std::string(1, static_cast<char>(c))});
    }
  }
  return tokens;
}

template <size_t N>
bool In(std::string_view word, const std::array<std::string_view, N>& words) {
  return std::find(words.begin(), words.end(), word) != words.end();
}

// Words that begin a statement other than a query. Refused wherever they
// appear as a keyword (not quoted, not after '.' or AS), because DuckDB
// accepts several of them inside a query: (DESCRIBE t), (SHOW t), (SUMMARIZE t),
// and Postgres-style data-modifying CTEs.
constexpr std::array<std::string_view, 36> kStatementKeywords = {
    "insert",  "update",   "delete",   "merge",      "create",  "drop",     "alter",
    "attach",  "detach",   "copy",     "pragma",     "install", "load",     "set",
    "reset",   "call",     "export",   "import",     "vacuum",  "checkpoint", "use",
    "begin",   "commit",   "rollback", "summarize",  "describe", "show",    "explain",
    "prepare", "execute",  "deallocate", "truncate", "grant",   "revoke",   "analyze",
    "into"};

// Keywords that close an open FROM list at their level.
constexpr std::array<std::string_view, 14> kClauseKeywords = {
    "where", "group",     "having", "window", "qualify", "order",  "limit",
    "offset", "union",    "intersect", "except", "select", "fetch", "returning"};

// Words that may start a query (at the top or inside brackets).
constexpr std::array<std::string_view, 7> kQueryStarts = {"select", "with",  "values", "from",
                                                          "table",  "pivot", "unpivot"};

// Functions whose argument lists use FROM as a plain keyword.
constexpr std::array<std::string_view, 4> kFromArgFunctions = {"extract", "substring", "trim",
                                                               "overlay"};

// Table functions that read no table and no file.
constexpr std::array<std::string_view, 3> kAllowedTableFunctions = {"unnest", "range",
                                                                    "generate_series"};

// Schemas and catalogs of the database itself.
constexpr std::array<std::string_view, 6> kSystemSchemas = {
    "main", "temp", "system", "memory", "information_schema", "pg_catalog"};

// Functions (and schemas) that reach files, other databases, settings, the
// environment, or the database's own catalog.
bool IsDeniedFunction(std::string_view name) {
  static constexpr std::array<std::string_view, 11> kPrefixes = {
      "read_",   "duckdb_", "pragma_", "sqlite_", "pg_",       "parquet_",
      "iceberg_", "delta_", "postgres_", "mysql_", "__aquifer"};
  static constexpr std::array<std::string_view, 12> kExact = {
      "glob",       "current_setting", "getenv",       "query",
      "query_table", "sniff_csv",      "which_secret", "json_execute_serialized_sql",
      "load_aws_credentials", "information_schema", "pg_catalog", "force_checkpoint"};
  for (std::string_view prefix : kPrefixes) {
    if (name.starts_with(prefix)) return true;
  }
  return In(name, kExact) || name.ends_with("_scan");
}

// Names refused wherever they appear, quoted or not.
bool IsDeniedAnywhere(std::string_view name) {
  return name == "information_schema" || name == "pg_catalog" || name.starts_with("__aquifer");
}

// A project name that is really a schema or catalog of the database.
bool IsSystemProject(std::string_view name) {
  return In(name, kSystemSchemas) || name.starts_with("__aquifer") || name.starts_with("duckdb_") ||
         name.starts_with("pg_") || name.starts_with("sqlite_") || name.starts_with("pragma_");
}

enum class CteState : uint8_t {
  kNone,
  kName,       // after WITH [RECURSIVE] or a comma: a CTE name comes next
  kAfterName,  // until AS (column list, USING KEY ...)
  kAfterAs,    // [NOT] [MATERIALIZED] then '('
  kInBody,     // the body's bracket is open
  kAfterBody,  // ',' for another CTE, or the query
};

struct Frame {
  char open = 0;             // '(', '[', '{'; 0 at the top
  size_t open_offset = 0;
  bool first = true;         // no token of this frame seen yet
  bool from_list = false;    // a FROM list is open at this level
  bool expect_table = false; // the next token is a table position
  bool from_is_keyword_arg = false;  // inside EXTRACT/SUBSTRING/TRIM/OVERLAY(...)
  bool seen_recursive = false;
  CteState cte = CteState::kNone;
  std::vector<std::string> ctes;  // CTE names visible at this level (lower-case)
  // A non-recursive CTE's name, visible once its body is closed: DuckDB binds
  // a CTE's own name inside its body to a real table of that name.
  std::optional<std::string> pending_cte;
};

constexpr size_t kMaxDepth = 256;

class Checker {
 public:
  Checker(std::string_view sql, std::vector<Token> tokens) : sql_(sql), tokens_(std::move(tokens)) {}

  Result<std::vector<SqlTableRef>> Run();

 private:
  bool IsWord(size_t k, std::string_view word) const {
    return k < tokens_.size() && tokens_[k].kind == TokenKind::kIdent && tokens_[k].text == word;
  }
  bool IsKind(size_t k, TokenKind kind) const { return k < tokens_.size() && tokens_[k].kind == kind; }
  // A bare word used as a keyword: not a name after '.' or AS.
  bool IsKeywordAt(size_t k) const {
    if (!IsKind(k, TokenKind::kIdent)) return false;
    if (k == 0) return true;
    return !IsKind(k - 1, TokenKind::kDot) && !IsWord(k - 1, "as");
  }
  bool CteVisible(const std::string& name) const {
    for (const Frame& frame : frames_) {
      if (std::find(frame.ctes.begin(), frame.ctes.end(), name) != frame.ctes.end()) return true;
    }
    return false;
  }
  std::string Show(size_t k) const {
    return k < tokens_.size() ? "'" + Excerpt(sql_, tokens_[k].begin, tokens_[k].end) + "'"
                              : std::string("the end of the query");
  }
  size_t OffsetOf(size_t k) const { return k < tokens_.size() ? tokens_[k].begin : sql_.size(); }

  Status CheckStart();
  Status Push(size_t k, bool table_position);
  Status Pop(size_t k);
  // Checks an identifier token that is not part of a table reference.
  Status CheckName(size_t k);
  // Consumes a table position starting at token k; returns the next token index.
  Result<size_t> TableItem(size_t k);
  // One token in the general case.
  Result<size_t> Step(size_t k);

  std::string_view sql_;
  std::vector<Token> tokens_;
  std::vector<Frame> frames_;
  std::vector<SqlTableRef> refs_;
};

Status Checker::CheckStart() {
  size_t k = 0;
  while (IsKind(k, TokenKind::kOpen) && tokens_[k].text == "(") ++k;
  if (k >= tokens_.size()) {
    if (k == 0) return InvalidArgument("the query is empty");
    return InvalidArgument("the query has no statement inside its parentheses");
  }
  if (!IsKind(k, TokenKind::kIdent) || !In(tokens_[k].text, std::array<std::string_view, 5>{
                                                                 "select", "with", "values", "from", "table"})) {
    return InvalidArgument("only a single SELECT query is allowed; found {} at offset {}", Show(k), OffsetOf(k));
  }
  return Status::OK();
}

Status Checker::Push(size_t k, bool table_position) {
  if (frames_.size() >= kMaxDepth) {
    return InvalidArgument("the query nests brackets more than {} deep (offset {})", kMaxDepth, OffsetOf(k));
  }
  Frame frame;
  frame.open = tokens_[k].text[0];
  frame.open_offset = tokens_[k].begin;
  if (table_position) {
    // A subquery or a bracketed join tree: the first token decides.
    frame.from_list = true;
    frame.expect_table = true;
  } else if (k > 0 && frame.open == '(' && IsKind(k - 1, TokenKind::kIdent) &&
             In(tokens_[k - 1].text, kFromArgFunctions) &&
             (k < 2 || !IsKind(k - 2, TokenKind::kDot))) {
    frame.from_is_keyword_arg = true;
  }
  frames_.push_back(std::move(frame));
  return Status::OK();
}

Status Checker::Pop(size_t k) {
  const char close = tokens_[k].text[0];
  if (frames_.size() <= 1) return InvalidArgument("unmatched '{}' at offset {}", close, tokens_[k].begin);
  const Frame& frame = frames_.back();
  const char expected = frame.open == '(' ? ')' : frame.open == '[' ? ']' : '}';
  if (close != expected) {
    return InvalidArgument("'{}' at offset {} does not close the '{}' at offset {}", close, tokens_[k].begin,
                           frame.open, frame.open_offset);
  }
  if (frame.cte != CteState::kNone) {
    return InvalidArgument("incomplete WITH clause before offset {}", tokens_[k].begin);
  }
  frames_.pop_back();
  Frame& parent = frames_.back();
  if (parent.cte == CteState::kInBody) {
    parent.cte = CteState::kAfterBody;
    if (parent.pending_cte) parent.ctes.push_back(*std::exchange(parent.pending_cte, std::nullopt));
  }
  return Status::OK();
}

Status Checker::CheckName(size_t k) {
  const Token& tok = tokens_[k];
  const std::string name = tok.kind == TokenKind::kIdent ? tok.text : Lower(tok.text);
  if (IsDeniedAnywhere(name)) {
    return InvalidArgument("'{}' is not allowed: catalog and system tables cannot be queried (offset {})",
                           Excerpt(sql_, tok.begin, tok.end), tok.begin);
  }
  if (IsKind(k + 1, TokenKind::kOpen) && tokens_[k + 1].text == "(" && IsDeniedFunction(name)) {
    return InvalidArgument("function '{}' is not allowed: it reaches files, settings or system tables (offset {})",
                           Excerpt(sql_, tok.begin, tok.end), tok.begin);
  }
  if (IsKind(k + 1, TokenKind::kDot) && (IsSystemProject(name) || IsDeniedFunction(name))) {
    return InvalidArgument("'{}' is not allowed as a qualifier: system schemas cannot be used (offset {})",
                           Excerpt(sql_, tok.begin, tok.end), tok.begin);
  }
  return Status::OK();
}

Result<size_t> Checker::TableItem(size_t k) {
  Frame& frame = frames_.back();
  while (IsKeywordAt(k) && (tokens_[k].text == "lateral" || tokens_[k].text == "only")) ++k;
  if (k >= tokens_.size()) return InvalidArgument("expected a table name at the end of the query");
  const Token& tok = tokens_[k];
  frame.expect_table = false;
  switch (tok.kind) {
    case TokenKind::kOpen:
      if (tok.text != "(") break;
      AQ_RETURN_IF_ERROR(Push(k, /*table_position=*/true));
      return k + 1;
    case TokenKind::kString:
      return InvalidArgument("file access is not allowed: {} names a file, not a table (offset {})", Show(k),
                             tok.begin);
    case TokenKind::kParam:
      return InvalidArgument("query parameters are not supported ({} at offset {})", Show(k), tok.begin);
    case TokenKind::kIdent:
      if (In(tok.text, kStatementKeywords)) {
        return InvalidArgument("'{}' is not allowed in a query (offset {}): only a single SELECT runs here",
                               tok.text, tok.begin);
      }
      [[fallthrough]];
    case TokenKind::kQuotedIdent: {
      std::vector<size_t> parts = {k};
      size_t next = k + 1;
      while (IsKind(next, TokenKind::kDot)) {
        if (!IsKind(next + 1, TokenKind::kIdent) && !IsKind(next + 1, TokenKind::kQuotedIdent)) {
          return InvalidArgument("expected a name after '.' at offset {}, found {}", tokens_[next].begin,
                                 Show(next + 1));
        }
        parts.push_back(next + 1);
        next += 2;
      }
      const size_t begin = tok.begin, end = tokens_[parts.back()].end;
      const std::string written = Excerpt(sql_, begin, end);
      if (IsKind(next, TokenKind::kOpen) && tokens_[next].text == "(") {
        if (parts.size() == 1 && tok.kind == TokenKind::kIdent && In(tok.text, kAllowedTableFunctions)) {
          return k;  // an argument list, checked like any expression
        }
        return InvalidArgument("table functions are not allowed: {} (offset {})", written, begin);
      }
      if (parts.size() == 1) {
        const std::string name = tok.kind == TokenKind::kIdent ? tok.text : Lower(tok.text);
        if (CteVisible(name)) return next;
        return InvalidArgument("table '{}' must be named project.table (offset {})", written, begin);
      }
      if (parts.size() > 2) {
        return InvalidArgument("table '{}' must be named project.table; three-part names are not allowed (offset {})",
                               written, begin);
      }
      SqlTableRef ref;
      ref.project = tokens_[parts[0]].text;
      ref.table = tokens_[parts[1]].text;
      ref.begin = begin;
      ref.end = end;
      if (IsSystemProject(Lower(ref.project))) {
        return InvalidArgument("'{}' is a system schema, not a project: catalog and system tables cannot be queried "
                               "(offset {})",
                               ref.project, begin);
      }
      refs_.push_back(std::move(ref));
      return next;
    }
    default:
      break;
  }
  return InvalidArgument("expected a table name at offset {}, found {}", tok.begin, Show(k));
}

Result<size_t> Checker::Step(size_t k) {
  Frame& frame = frames_.back();
  const Token& tok = tokens_[k];
  const bool frame_start = frame.first;
  frame.first = false;

  // The first token of a bracket opened in table position: a query, or a join tree.
  if (frame_start && frame.expect_table && IsKind(k, TokenKind::kIdent) && In(tok.text, kQueryStarts)) {
    frame.expect_table = false;
    frame.from_list = false;
  }

  // WITH clause bookkeeping.
  switch (frame.cte) {
    case CteState::kName:
      if (IsWord(k, "recursive") && !frame.seen_recursive && frame.ctes.empty()) {
        frame.seen_recursive = true;
        return k + 1;
      }
      if (tok.kind == TokenKind::kIdent || tok.kind == TokenKind::kQuotedIdent) {
        if (tok.kind == TokenKind::kIdent && In(tok.text, kStatementKeywords)) {
          return InvalidArgument("'{}' is not allowed in a query (offset {}): only a single SELECT runs here",
                                 tok.text, tok.begin);
        }
        std::string name = tok.kind == TokenKind::kIdent ? tok.text : Lower(tok.text);
        // Under RECURSIVE a CTE's own name may bind to a system view of that
        // name instead of the CTE, so such names are refused outright.
        if (IsDeniedFunction(name) || IsSystemProject(name)) {
          return InvalidArgument("a WITH query may not be named '{}': the name is reserved for system tables "
                                 "(offset {})",
                                 Excerpt(sql_, tok.begin, tok.end), tok.begin);
        }
        if (frame.seen_recursive) {
          frame.ctes.push_back(std::move(name));
        } else {
          frame.pending_cte = std::move(name);
        }
        frame.cte = CteState::kAfterName;
        return k + 1;
      }
      return InvalidArgument("expected the name of a WITH query at offset {}, found {}", tok.begin, Show(k));
    case CteState::kAfterName:
      if (IsWord(k, "as")) {
        frame.cte = CteState::kAfterAs;
        return k + 1;
      }
      break;  // column list, USING KEY (...): ordinary tokens
    case CteState::kAfterAs:
      if (IsWord(k, "not") || IsWord(k, "materialized")) return k + 1;
      if (IsKind(k, TokenKind::kOpen) && tok.text == "(") {
        AQ_RETURN_IF_ERROR(Push(k, /*table_position=*/false));
        frames_[frames_.size() - 2].cte = CteState::kInBody;
        return k + 1;
      }
      return InvalidArgument("expected '(' after AS in a WITH clause at offset {}, found {}", tok.begin, Show(k));
    case CteState::kAfterBody:
      if (tok.kind == TokenKind::kComma) {
        frame.cte = CteState::kName;
        return k + 1;
      }
      frame.cte = CteState::kNone;
      break;
    case CteState::kNone:
    case CteState::kInBody:
      break;
  }

  if (frame.expect_table) return TableItem(k);

  switch (tok.kind) {
    case TokenKind::kParam:
      return InvalidArgument("query parameters are not supported ({} at offset {})", Show(k), tok.begin);
    case TokenKind::kOpen:
      AQ_RETURN_IF_ERROR(Push(k, /*table_position=*/false));
      return k + 1;
    case TokenKind::kClose:
      AQ_RETURN_IF_ERROR(Pop(k));
      return k + 1;
    case TokenKind::kSemicolon:
      if (frames_.size() > 1) {
        return InvalidArgument("';' inside brackets at offset {} (the '{}' at offset {} is not closed)", tok.begin,
                               frames_.back().open, frames_.back().open_offset);
      }
      if (k + 1 < tokens_.size()) {
        return InvalidArgument("only one statement is allowed; a second one starts at offset {}",
                               tokens_[k + 1].begin);
      }
      return k + 1;
    case TokenKind::kComma:
      if (frame.from_list) frame.expect_table = true;
      return k + 1;
    case TokenKind::kQuotedIdent:
      AQ_RETURN_IF_ERROR(CheckName(k));
      return k + 1;
    case TokenKind::kIdent:
      break;
    default:
      return k + 1;
  }

  AQ_RETURN_IF_ERROR(CheckName(k));
  if (!IsKeywordAt(k)) return k + 1;
  const std::string& word = tok.text;
  if (In(word, kStatementKeywords)) {
    return InvalidArgument(
        "'{}' is not allowed in a query (offset {}): only a single SELECT runs here; write \"{}\" if it names a "
        "column",
        word, tok.begin, word);
  }
  if (word == "from") {
    const bool distinct_from = k >= 2 && IsWord(k - 1, "distinct") && (IsWord(k - 2, "is") || IsWord(k - 2, "not"));
    if (!frame.from_is_keyword_arg && !distinct_from) {
      frame.from_list = true;
      frame.expect_table = true;
    }
  } else if (word == "join") {
    frame.from_list = true;
    frame.expect_table = true;
  } else if (word == "table") {
    frame.expect_table = true;
  } else if (word == "pivot" || word == "unpivot") {
    if (!(IsKind(k + 1, TokenKind::kOpen) && tokens_[k + 1].text == "(")) frame.expect_table = true;
  } else if (word == "with" && frame_start) {
    frame.cte = CteState::kName;
  } else if (In(word, kClauseKeywords)) {
    frame.from_list = false;
  }
  return k + 1;
}

Result<std::vector<SqlTableRef>> Checker::Run() {
  for (const Token& tok : tokens_) {
    if (tok.kind == TokenKind::kUnicodeIdent) {
      return InvalidArgument("Unicode-escaped identifiers are not supported: {} at offset {}; write the name in "
                             "plain double quotes",
                             Excerpt(sql_, tok.begin, tok.end), tok.begin);
    }
  }
  AQ_RETURN_IF_ERROR(CheckStart());
  frames_.emplace_back();
  size_t k = 0;
  while (k < tokens_.size()) {
    AQ_ASSIGN_OR_RETURN(k, Step(k));
  }
  if (frames_.size() > 1) {
    return InvalidArgument("'{}' at offset {} is never closed", frames_.back().open, frames_.back().open_offset);
  }
  if (frames_.back().expect_table) return InvalidArgument("expected a table name at the end of the query");
  if (frames_.back().cte != CteState::kNone && frames_.back().cte != CteState::kAfterBody) {
    return InvalidArgument("incomplete WITH clause at the end of the query");
  }
  if (frames_.back().cte == CteState::kAfterBody) {
    return InvalidArgument("a WITH clause must be followed by a SELECT");
  }
  return std::move(refs_);
}

}  // namespace

Result<std::vector<SqlTableRef>> CheckSql(std::string_view sql) {
  if (sql.size() > kMaxSqlLength) {
    return InvalidArgument("the query is {} bytes; at most {} are allowed", sql.size(), kMaxSqlLength);
  }
  AQ_ASSIGN_OR_RETURN(std::vector<Token> tokens, Tokenize(sql));
  return Checker(sql, std::move(tokens)).Run();
}

std::string RewriteTableRefs(std::string_view sql, const std::vector<SqlTableRef>& refs,
                             const std::vector<std::string>& replacements) {
  auto fuses = [](char c) { return c == '"' || c == '\'' || IsIdentChar(static_cast<unsigned char>(c)); };
  std::string out(sql);
  for (size_t i = std::min(refs.size(), replacements.size()); i-- > 0;) {
    const SqlTableRef& ref = refs[i];
    std::string text = replacements[i];
    if (ref.end < sql.size() && fuses(sql[ref.end])) text.push_back(' ');
    // After `U&` a quoted name would become a U&"..." token.
    if (ref.begin > 0 && (fuses(sql[ref.begin - 1]) || sql[ref.begin - 1] == '&')) text.insert(text.begin(), ' ');
    out.replace(ref.begin, ref.end - ref.begin, text);
  }
  return out;
}

}  // namespace aquifer::sql
