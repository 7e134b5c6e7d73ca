#include "aquifer/drivers/duckdb/rows.h"

#include <cstring>
#include <vector>

#include <fmt/format.h>

#include "aquifer/drivers/duckdb/handles.h"
#include "aquifer/schema/internal.h"

namespace aquifer::drivers::duckdb {
namespace {

using schema::Kind;
using schema::Logical;
using schema::Value;

bool WideDecimal(const schema::Type& type) {
  return type.logical == Logical::kDecimal && type.precision > 38;
}

// Sign-extends big-endian two's-complement bytes into an __int128.
// False if the value needs more than 128 bits.
bool BigEndianToInt128(std::string_view bytes, __int128* out) {
  if (bytes.empty()) {
    *out = 0;
    return true;
  }
  const bool negative = (static_cast<uint8_t>(bytes[0]) & 0x80) != 0;
  while (bytes.size() > 16) {  // leading bytes must be pure sign extension
    if (static_cast<uint8_t>(bytes[0]) != (negative ? 0xFF : 0x00)) return false;
    bytes.remove_prefix(1);
  }
  unsigned __int128 acc = negative ? ~static_cast<unsigned __int128>(0) : 0;
  for (char c : bytes) acc = (acc << 8) | static_cast<uint8_t>(c);
  *out = static_cast<__int128>(acc);
  return true;
}

template <typename T>
T* DataOf(duckdb_vector vector) {
  return static_cast<T*>(duckdb_vector_get_data(vector));
}

Status Mismatch(const std::string& path, const schema::Type& type) {
  return InvalidArgument("{}: value does not match the schema type {}", path.empty() ? "record" : path,
                         type.Describe());
}

}  // namespace

std::string ColumnType(const schema::Type& type) {
  if (type.logical == Logical::kDecimal) {
    if (WideDecimal(type)) return "VARCHAR";
    return fmt::format("DECIMAL({},{})", type.precision, type.scale);
  }
  if (type.logical == Logical::kUuid) return "UUID";
  if (type.logical == Logical::kTimestampMillis) return "TIMESTAMP_MS";
  switch (type.kind) {
    case Kind::kBoolean: return "BOOLEAN";
    case Kind::kInt: return "INTEGER";
    case Kind::kLong: return "BIGINT";
    case Kind::kFloat: return "FLOAT";
    case Kind::kDouble: return "DOUBLE";
    case Kind::kString: return "VARCHAR";
    case Kind::kBytes: return "BLOB";
    case Kind::kFixed: return "BLOB";
    case Kind::kEnum: return "VARCHAR";
    case Kind::kArray: return ColumnType(*type.items) + "[]";
    case Kind::kRecord: {
      std::string out = "STRUCT(";
      for (size_t i = 0; i < type.fields.size(); ++i) {
        if (i > 0) out += ", ";
        out += QuoteIdent(type.fields[i].name) + " " + ColumnType(*type.fields[i].type);
      }
      return out + ")";
    }
  }
  return "VARCHAR";
}

std::string CreateTableSql(const std::string& quoted_table, const schema::Schema& schema) {
  std::string sql = "CREATE TABLE IF NOT EXISTS " + quoted_table + " (";
  for (const schema::Field& field : schema.fields()) {
    sql += QuoteIdent(field.name) + " " + ColumnType(*field.type);
    if (!field.type->nullable) sql += " NOT NULL";
    sql += ", ";
  }
  sql += "__key BLOB NOT NULL, __timestamp TIMESTAMP NOT NULL)";
  return sql;
}

void SetNull(duckdb_vector vector, const schema::Type& type, idx_t row) {
  duckdb_vector_ensure_validity_writable(vector);
  duckdb_validity_set_row_invalid(duckdb_vector_get_validity(vector), row);
  if (type.kind == Kind::kRecord) {
    for (size_t i = 0; i < type.fields.size(); ++i) {
      SetNull(duckdb_struct_vector_get_child(vector, i), *type.fields[i].type, row);
    }
  } else if (type.kind == Kind::kArray && type.logical == Logical::kNone) {
    auto* entries = DataOf<duckdb_list_entry>(vector);
    entries[row].offset = duckdb_list_vector_get_size(vector);
    entries[row].length = 0;
  }
}

Status FillCell(duckdb_vector vector, const schema::Type& type, idx_t row, const Value& value,
                const std::string& path) {
  if (value.is_null()) {
    if (!type.nullable) return InvalidArgument("{}: null for a non-nullable field", path);
    SetNull(vector, type, row);
    return Status::OK();
  }
  if (type.logical == Logical::kDecimal) {
    const auto* bytes = std::get_if<schema::Bytes>(&value.v);
    if (bytes == nullptr) return Mismatch(path, type);
    if (WideDecimal(type)) {
      std::string text = DecimalText(bytes->data, type.scale);
      duckdb_vector_assign_string_element_len(vector, row, text.data(), text.size());
      return Status::OK();
    }
    __int128 unscaled = 0;
    if (!BigEndianToInt128(bytes->data, &unscaled)) {
      return InvalidArgument("{}: decimal out of range for precision {}", path, type.precision);
    }
    if (type.precision <= 4) {
      DataOf<int16_t>(vector)[row] = static_cast<int16_t>(unscaled);
    } else if (type.precision <= 9) {
      DataOf<int32_t>(vector)[row] = static_cast<int32_t>(unscaled);
    } else if (type.precision <= 18) {
      DataOf<int64_t>(vector)[row] = static_cast<int64_t>(unscaled);
    } else {
      duckdb_hugeint& out = DataOf<duckdb_hugeint>(vector)[row];
      out.lower = static_cast<uint64_t>(static_cast<unsigned __int128>(unscaled));
      out.upper = static_cast<int64_t>(unscaled >> 64);
    }
    return Status::OK();
  }
  if (type.logical == Logical::kUuid) {
    const auto* bytes = std::get_if<schema::Bytes>(&value.v);
    if (bytes == nullptr || bytes->data.size() != 16) return Mismatch(path, type);
    uint64_t hi = 0, lo = 0;
    for (int i = 0; i < 8; ++i) hi = (hi << 8) | static_cast<uint8_t>(bytes->data[i]);
    for (int i = 8; i < 16; ++i) lo = (lo << 8) | static_cast<uint8_t>(bytes->data[i]);
    // DuckDB stores a UUID as a hugeint with the top bit flipped, so that
    // signed order equals the textual order.
    duckdb_hugeint& out = DataOf<duckdb_hugeint>(vector)[row];
    out.lower = lo;
    out.upper = static_cast<int64_t>(hi ^ (uint64_t{1} << 63));
    return Status::OK();
  }
  switch (type.kind) {
    case Kind::kBoolean: {
      const bool* b = std::get_if<bool>(&value.v);
      if (b == nullptr) return Mismatch(path, type);
      DataOf<bool>(vector)[row] = *b;
      return Status::OK();
    }
    case Kind::kInt:
    case Kind::kLong: {
      const int64_t* n = std::get_if<int64_t>(&value.v);
      if (n == nullptr) return Mismatch(path, type);
      if (type.kind == Kind::kInt) {
        DataOf<int32_t>(vector)[row] = static_cast<int32_t>(*n);
      } else {
        DataOf<int64_t>(vector)[row] = *n;  // timestamp-millis too: TIMESTAMP_MS is int64 ms
      }
      return Status::OK();
    }
    case Kind::kFloat: {
      const float* f = std::get_if<float>(&value.v);
      if (f == nullptr) return Mismatch(path, type);
      DataOf<float>(vector)[row] = *f;
      return Status::OK();
    }
    case Kind::kDouble: {
      const double* d = std::get_if<double>(&value.v);
      if (d == nullptr) return Mismatch(path, type);
      DataOf<double>(vector)[row] = *d;
      return Status::OK();
    }
    case Kind::kString: {
      const std::string* s = std::get_if<std::string>(&value.v);
      if (s == nullptr) return Mismatch(path, type);
      duckdb_vector_assign_string_element_len(vector, row, s->data(), s->size());
      return Status::OK();
    }
    case Kind::kBytes:
    case Kind::kFixed: {
      const auto* bytes = std::get_if<schema::Bytes>(&value.v);
      if (bytes == nullptr) return Mismatch(path, type);
      duckdb_vector_assign_string_element_len(vector, row, bytes->data.data(), bytes->data.size());
      return Status::OK();
    }
    case Kind::kEnum: {
      const auto* symbol = std::get_if<schema::EnumSymbol>(&value.v);
      if (symbol == nullptr || symbol->index < 0 ||
          static_cast<size_t>(symbol->index) >= type.symbols.size()) {
        return Mismatch(path, type);
      }
      const std::string& text = type.symbols[symbol->index];
      duckdb_vector_assign_string_element_len(vector, row, text.data(), text.size());
      return Status::OK();
    }
    case Kind::kArray: {
      if (value.v.index() != Value::kArrayIndex) return Mismatch(path, type);
      const schema::Array& items = std::get<Value::kArrayIndex>(value.v);
      const idx_t offset = duckdb_list_vector_get_size(vector);
      if (duckdb_list_vector_reserve(vector, offset + items.size()) == DuckDBError ||
          duckdb_list_vector_set_size(vector, offset + items.size()) == DuckDBError) {
        return Internal("{}: cannot grow a list vector", path);
      }
      auto* entries = DataOf<duckdb_list_entry>(vector);
      entries[row].offset = offset;
      entries[row].length = items.size();
      duckdb_vector child = duckdb_list_vector_get_child(vector);
      for (size_t i = 0; i < items.size(); ++i) {
        AQ_RETURN_IF_ERROR(FillCell(child, *type.items, offset + i, items[i],
                                    fmt::format("{}[{}]", path, i)));
      }
      return Status::OK();
    }
    case Kind::kRecord: {
      if (value.v.index() != Value::kRecordIndex) return Mismatch(path, type);
      const schema::Record& fields = std::get<Value::kRecordIndex>(value.v);
      if (fields.size() != type.fields.size()) return Mismatch(path, type);
      for (size_t i = 0; i < fields.size(); ++i) {
        AQ_RETURN_IF_ERROR(FillCell(duckdb_struct_vector_get_child(vector, i), *type.fields[i].type, row,
                                    fields[i], path + "." + type.fields[i].name));
      }
      return Status::OK();
    }
  }
  return Mismatch(path, type);
}

namespace {

// A field path built only when an error is reported (as the schema codec does).
struct PathFrame {
  const PathFrame* parent = nullptr;
  std::string_view name;  // field name, or empty for an array item
  int64_t index = -1;     // array index when name is empty
};

void AppendPath(const PathFrame* frame, std::string* out) {
  if (frame == nullptr) return;
  AppendPath(frame->parent, out);
  if (frame->name.empty() && frame->index >= 0) {
    fmt::format_to(std::back_inserter(*out), "[{}]", frame->index);
  } else {
    if (!out->empty()) out->push_back('.');
    out->append(frame->name);
  }
}

// Avro binary → DuckDB vectors. Every read is checked against the end of the input.
class AvroToVectors {
 public:
  explicit AvroToVectors(std::string_view data)
      : pos_(reinterpret_cast<const uint8_t*>(data.data())), end_(pos_ + data.size()) {}

  size_t remaining() const { return static_cast<size_t>(end_ - pos_); }

  Status Fill(duckdb_vector vector, const schema::Type& type, idx_t row, const PathFrame* path) {
    if (type.nullable) {
      int64_t branch = 0;
      AQ_RETURN_IF_ERROR(ReadLong(path, &branch));
      if (branch != 0 && branch != 1) return Corrupt(path, fmt::format("union index {} out of range", branch));
      if (branch == type.null_branch) {
        SetNull(vector, type, row);
        return Status::OK();
      }
    }
    switch (type.kind) {
      case Kind::kBoolean: {
        if (remaining() < 1) return Truncated(path);
        uint8_t b = *pos_++;
        if (b > 1) return Corrupt(path, fmt::format("invalid boolean byte {}", b));
        DataOf<bool>(vector)[row] = b == 1;
        return Status::OK();
      }
      case Kind::kInt:
      case Kind::kLong: {
        int64_t n = 0;
        AQ_RETURN_IF_ERROR(ReadLong(path, &n));
        if (type.kind == Kind::kInt) {
          if (n < INT32_MIN || n > INT32_MAX) return Corrupt(path, fmt::format("{} is out of range for int", n));
          DataOf<int32_t>(vector)[row] = static_cast<int32_t>(n);
        } else {
          DataOf<int64_t>(vector)[row] = n;  // timestamp-millis too: TIMESTAMP_MS is int64 ms
        }
        return Status::OK();
      }
      case Kind::kFloat: {
        if (remaining() < 4) return Truncated(path);
        uint32_t bits = 0;
        for (int idx = 0; idx < 4; ++idx) bits |= static_cast<uint32_t>(pos_[idx]) << (8 * idx);
        pos_ += 4;
        std::memcpy(&DataOf<float>(vector)[row], &bits, 4);
        return Status::OK();
      }
      case Kind::kDouble: {
        if (remaining() < 8) return Truncated(path);
        uint64_t bits = 0;
        for (int idx = 0; idx < 8; ++idx) bits |= static_cast<uint64_t>(pos_[idx]) << (8 * idx);
        pos_ += 8;
        std::memcpy(&DataOf<double>(vector)[row], &bits, 8);
        return Status::OK();
      }
      case Kind::kString: {
        std::string_view text;
        AQ_RETURN_IF_ERROR(ReadBytes(path, &text));
        if (type.logical == Logical::kUuid) {
          std::string raw;
          if (!schema::internal::ParseUuidText(text, &raw)) return Corrupt(path, "invalid uuid text");
          uint64_t hi = 0, lo = 0;
          for (int i = 0; i < 8; ++i) hi = (hi << 8) | static_cast<uint8_t>(raw[i]);
          for (int i = 8; i < 16; ++i) lo = (lo << 8) | static_cast<uint8_t>(raw[i]);
          // DuckDB stores a UUID as a hugeint with the top bit flipped (see FillCell).
          duckdb_hugeint& out = DataOf<duckdb_hugeint>(vector)[row];
          out.lower = lo;
          out.upper = static_cast<int64_t>(hi ^ (uint64_t{1} << 63));
          return Status::OK();
        }
        if (!schema::internal::IsValidUtf8(text)) return Corrupt(path, "string is not valid UTF-8");
        duckdb_vector_assign_string_element_len(vector, row, text.data(), text.size());
        return Status::OK();
      }
      case Kind::kBytes:
      case Kind::kFixed: {
        std::string_view raw;
        if (type.kind == Kind::kFixed) {
          if (remaining() < static_cast<size_t>(type.fixed_size)) return Truncated(path);
          raw = std::string_view(reinterpret_cast<const char*>(pos_), type.fixed_size);
          pos_ += type.fixed_size;
        } else {
          AQ_RETURN_IF_ERROR(ReadBytes(path, &raw));
        }
        if (type.logical == Logical::kDecimal) return FillDecimal(vector, type, row, raw, path);
        duckdb_vector_assign_string_element_len(vector, row, raw.data(), raw.size());
        return Status::OK();
      }
      case Kind::kEnum: {
        int64_t index = 0;
        AQ_RETURN_IF_ERROR(ReadLong(path, &index));
        if (index < 0 || static_cast<uint64_t>(index) >= type.symbols.size()) {
          return Corrupt(path, fmt::format("enum index {} out of range for {}", index, type.Describe()));
        }
        const std::string& text = type.symbols[static_cast<size_t>(index)];
        duckdb_vector_assign_string_element_len(vector, row, text.data(), text.size());
        return Status::OK();
      }
      case Kind::kArray: {
        const idx_t start = duckdb_list_vector_get_size(vector);
        idx_t size = start;
        duckdb_vector child = duckdb_list_vector_get_child(vector);
        while (true) {
          int64_t count = 0;
          AQ_RETURN_IF_ERROR(ReadLong(path, &count));
          if (count == 0) break;
          if (count < 0) {
            if (count == INT64_MIN) return Corrupt(path, "invalid array block count");
            count = -count;
            int64_t block_bytes = 0;
            AQ_RETURN_IF_ERROR(ReadLong(path, &block_bytes));
            if (block_bytes < 0 || static_cast<uint64_t>(block_bytes) > remaining()) {
              return Corrupt(path, fmt::format("array block size {} exceeds the input", block_bytes));
            }
          }
          // Every item takes at least one byte (records have fields, fixed has size >= 1).
          if (static_cast<uint64_t>(count) > remaining()) {
            return Corrupt(path, fmt::format("array block count {} exceeds the input", count));
          }
          const idx_t grown = size + static_cast<idx_t>(count);
          if (duckdb_list_vector_reserve(vector, grown) == DuckDBError ||
              duckdb_list_vector_set_size(vector, grown) == DuckDBError) {
            return Internal("{}: cannot grow a list vector", PathText(path));
          }
          child = duckdb_list_vector_get_child(vector);  // reserving may replace the child's buffers
          for (; size < grown; ++size) {
            PathFrame frame{path, {}, static_cast<int64_t>(size - start)};
            AQ_RETURN_IF_ERROR(Fill(child, *type.items, size, &frame));
          }
        }
        auto* entries = DataOf<duckdb_list_entry>(vector);
        entries[row].offset = start;
        entries[row].length = size - start;
        return Status::OK();
      }
      case Kind::kRecord: {
        for (size_t idx = 0; idx < type.fields.size(); ++idx) {
          PathFrame frame{path, type.fields[idx].name, -1};
          AQ_RETURN_IF_ERROR(Fill(duckdb_struct_vector_get_child(vector, idx), *type.fields[idx].type, row, &frame));
        }
        return Status::OK();
      }
    }
    return Corrupt(path, "unknown type");
  }

  Status FillRoot(const schema::Type& root, const duckdb_vector* vectors, idx_t row) {
    for (size_t idx = 0; idx < root.fields.size(); ++idx) {
      PathFrame frame{nullptr, root.fields[idx].name, -1};
      AQ_RETURN_IF_ERROR(Fill(vectors[idx], *root.fields[idx].type, row, &frame));
    }
    if (pos_ != end_) return Corruption("{} trailing bytes after the Avro datum", remaining());
    return Status::OK();
  }

 private:
  // The checks of schema::DecodeAvro, then the value as FillCell stores it.
  Status FillDecimal(duckdb_vector vector, const schema::Type& type, idx_t row, std::string_view raw,
                     const PathFrame* path) {
    if (raw.empty()) return Corrupt(path, "empty decimal");
    const std::string minimal = schema::internal::MinimalTwosComplement(raw);
    // Cheap size bound before the quadratic digit count: 10^p < 2^(4p).
    if (minimal.size() > static_cast<size_t>(type.precision) / 2 + 2) {
      return Corrupt(path, fmt::format("decimal wider than its precision {}", type.precision));
    }
    int digits = 0;
    schema::internal::DecimalBytesToText(minimal, type.scale, &digits);
    if (digits > type.precision) {
      return Corrupt(path, fmt::format("decimal has {} digits, more than the precision {}", digits,
                                       type.precision));
    }
    if (WideDecimal(type)) {
      std::string text = DecimalText(minimal, type.scale);
      duckdb_vector_assign_string_element_len(vector, row, text.data(), text.size());
      return Status::OK();
    }
    __int128 unscaled = 0;
    if (!BigEndianToInt128(minimal, &unscaled)) {
      return InvalidArgument("{}: decimal out of range for precision {}", PathText(path), type.precision);
    }
    if (type.precision <= 4) {
      DataOf<int16_t>(vector)[row] = static_cast<int16_t>(unscaled);
    } else if (type.precision <= 9) {
      DataOf<int32_t>(vector)[row] = static_cast<int32_t>(unscaled);
    } else if (type.precision <= 18) {
      DataOf<int64_t>(vector)[row] = static_cast<int64_t>(unscaled);
    } else {
      duckdb_hugeint& out = DataOf<duckdb_hugeint>(vector)[row];
      out.lower = static_cast<uint64_t>(static_cast<unsigned __int128>(unscaled));
      out.upper = static_cast<int64_t>(unscaled >> 64);
    }
    return Status::OK();
  }

  Status ReadLong(const PathFrame* path, int64_t* out) {
    uint64_t z = 0;
    for (int shift = 0; shift < 70; shift += 7) {
      if (pos_ == end_) return Truncated(path);
      uint8_t byte = *pos_++;
      if (shift == 63 && (byte & 0x7e) != 0) return Corrupt(path, "varint overflows 64 bits");
      z |= static_cast<uint64_t>(byte & 0x7f) << shift;
      if ((byte & 0x80) == 0) {
        *out = static_cast<int64_t>(z >> 1) ^ -static_cast<int64_t>(z & 1);
        return Status::OK();
      }
    }
    return Corrupt(path, "varint longer than 10 bytes");
  }

  Status ReadBytes(const PathFrame* path, std::string_view* out) {
    int64_t length = 0;
    AQ_RETURN_IF_ERROR(ReadLong(path, &length));
    if (length < 0) return Corrupt(path, fmt::format("negative length {}", length));
    if (static_cast<uint64_t>(length) > remaining()) {
      return Corrupt(path, fmt::format("length {} exceeds the {} bytes left", length, remaining()));
    }
    *out = std::string_view(reinterpret_cast<const char*>(pos_), static_cast<size_t>(length));
    pos_ += length;
    return Status::OK();
  }

  static std::string PathText(const PathFrame* path) {
    std::string out;
    AppendPath(path, &out);
    return out.empty() ? "record" : out;
  }
  Status Truncated(const PathFrame* path) { return Corrupt(path, "truncated Avro datum"); }
  Status Corrupt(const PathFrame* path, std::string_view message) {
    std::string out;
    AppendPath(path, &out);
    if (out.empty()) return Corruption("{}", message);
    return Corruption("{}: {}", out, message);
  }

  const uint8_t* pos_;
  const uint8_t* end_;
};

}  // namespace

Status AppendAvroRow(const schema::Type& root, std::string_view avro, const duckdb_vector* vectors, idx_t row) {
  if (root.kind != Kind::kRecord) return InvalidArgument("the schema's root is not a record");
  return AvroToVectors(avro).FillRoot(root, vectors, row);
}

std::string DecimalText(std::string_view big_endian, int scale) {
  // Magnitude as base-256 digits, most significant first.
  const bool negative = !big_endian.empty() && (static_cast<uint8_t>(big_endian[0]) & 0x80) != 0;
  std::vector<uint8_t> mag(big_endian.begin(), big_endian.end());
  if (negative) {  // two's complement negate
    for (uint8_t& b : mag) b = static_cast<uint8_t>(~b);
    for (size_t i = mag.size(); i-- > 0;) {
      if (++mag[i] != 0) break;
    }
  }
  std::string digits;  // least significant first
  bool nonzero = true;
  while (nonzero) {
    nonzero = false;
    unsigned rem = 0;
    for (uint8_t& b : mag) {
      unsigned cur = (rem << 8) | b;
      b = static_cast<uint8_t>(cur / 10);
      rem = cur % 10;
      if (b != 0) nonzero = true;
    }
    digits += static_cast<char>('0' + rem);
  }
  while (digits.size() <= static_cast<size_t>(scale)) digits += '0';
  std::string out;
  if (negative && digits.find_first_not_of('0') != std::string::npos) out += '-';
  for (size_t i = digits.size(); i-- > 0;) {
    out += digits[i];
    if (scale > 0 && i == static_cast<size_t>(scale)) out += '.';
  }
  return out;
}

}  // namespace aquifer::drivers::duckdb
