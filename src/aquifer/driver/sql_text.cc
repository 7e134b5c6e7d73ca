#include "aquifer/driver/sql_text.h"

#include <cctype>

namespace aquifer::driver {
namespace {

bool IsSpace(char c) { return std::isspace(static_cast<unsigned char>(c)) != 0; }

// The end of the line comment that starts at `pos` (`--`, or `#` where the
// dialect has it), or npos when no line comment starts there.
size_t LineCommentEnd(std::string_view sql, size_t pos, SqlComments comments) {
  if (sql.substr(pos, 2) != "--" && !(comments == SqlComments::kHash && sql[pos] == '#')) return std::string_view::npos;
  const size_t newline = sql.find('\n', pos);
  return newline == std::string_view::npos ? sql.size() : newline;
}

// The end of the block comment that starts at `pos`, or npos.
size_t BlockCommentEnd(std::string_view sql, size_t pos) {
  if (sql.substr(pos, 2) != "/*") return std::string_view::npos;
  const size_t close = sql.find("*/", pos + 2);
  return close == std::string_view::npos ? sql.size() : close + 2;
}

}  // namespace

std::string FirstKeyword(std::string_view sql, SqlComments comments) {
  size_t pos = 0;
  while (pos < sql.size()) {
    if (IsSpace(sql[pos]) || sql[pos] == '(') {
      ++pos;
    } else if (size_t end = LineCommentEnd(sql, pos, comments); end != std::string_view::npos) {
      pos = end;
    } else if (size_t end = BlockCommentEnd(sql, pos); end != std::string_view::npos) {
      pos = end;
    } else {
      break;
    }
  }
  std::string word;
  while (pos < sql.size() && std::isalpha(static_cast<unsigned char>(sql[pos]))) {
    word.push_back(static_cast<char>(std::toupper(static_cast<unsigned char>(sql[pos++]))));
  }
  return word;
}

bool HasSecondStatement(std::string_view sql, SqlComments comments) {
  char quote = 0;
  size_t pos = 0;
  while (pos < sql.size()) {
    const char c = sql[pos];
    if (quote != 0) {
      if (c == '\\') {
        ++pos;
      } else if (c == quote) {
        quote = 0;
      }
      ++pos;
    } else if (c == '\'' || c == '"' || c == '`') {
      quote = c;
      ++pos;
    } else if (size_t end = LineCommentEnd(sql, pos, comments); end != std::string_view::npos) {
      pos = end;
    } else if (size_t end = BlockCommentEnd(sql, pos); end != std::string_view::npos) {
      pos = end;
    } else if (c == ';') {
      for (size_t rest = pos + 1; rest < sql.size(); ++rest) {
        if (!IsSpace(sql[rest]) && sql[rest] != ';') return true;
      }
      return false;
    } else {
      ++pos;
    }
  }
  return false;
}

std::string_view TrimStatement(std::string_view sql) {
  while (!sql.empty() && (sql.back() == ';' || IsSpace(sql.back()))) sql.remove_suffix(1);
  return sql;
}

Status CheckOneSelect(std::string_view sql, SqlComments comments) {
  const std::string keyword = FirstKeyword(sql, comments);
  if (keyword != "SELECT" && keyword != "WITH") {
    return InvalidArgument("only SELECT queries are allowed, not {}", keyword.empty() ? std::string("this") : keyword);
  }
  if (HasSecondStatement(sql, comments)) return InvalidArgument("only one SELECT statement is allowed, not a script");
  return Status::OK();
}

}  // namespace aquifer::driver
