#include "aquifer/drivers/duckdb/cells.h"

#include <cmath>
#include <cstdio>

#include <fmt/format.h>

#include "aquifer/base/text.h"
#include "aquifer/drivers/duckdb/handles.h"
#include "aquifer/drivers/duckdb/rows.h"

namespace aquifer::drivers::duckdb {
namespace {

template <typename T>
const T& At(duckdb_vector vector, idx_t row) {
  return static_cast<const T*>(duckdb_vector_get_data(vector))[row];
}

std::string Int128Text(__int128 value) {
  if (value == 0) return "0";
  const bool negative = value < 0;
  unsigned __int128 mag = negative ? -static_cast<unsigned __int128>(value) : static_cast<unsigned __int128>(value);
  std::string digits;
  while (mag > 0) {
    digits += static_cast<char>('0' + static_cast<int>(mag % 10));
    mag /= 10;
  }
  if (negative) digits += '-';
  return {digits.rbegin(), digits.rend()};
}

std::string UInt128Text(unsigned __int128 mag) {
  if (mag == 0) return "0";
  std::string digits;
  while (mag > 0) {
    digits += static_cast<char>('0' + static_cast<int>(mag % 10));
    mag /= 10;
  }
  return {digits.rbegin(), digits.rend()};
}

template <typename F>
void AppendFloating(std::string* out, F value) {
  if (std::isnan(value)) {
    *out += "\"NaN\"";
  } else if (std::isinf(value)) {
    *out += value > 0 ? "\"Infinity\"" : "\"-Infinity\"";
  } else {
    fmt::format_to(std::back_inserter(*out), "{}", value);  // shortest round-trip form
  }
}

int64_t FloorDiv(int64_t a, int64_t b) {
  int64_t q = a / b;
  if ((a % b != 0) && ((a < 0) != (b < 0))) --q;
  return q;
}

std::string DecimalFromInt128(__int128 unscaled, int scale) {
  // Reuse the big-endian formatter: 16 bytes two's complement.
  std::string be(16, '\0');
  unsigned __int128 bits = static_cast<unsigned __int128>(unscaled);
  for (int i = 15; i >= 0; --i) {
    be[i] = static_cast<char>(static_cast<uint8_t>(bits & 0xFF));
    bits >>= 8;
  }
  return DecimalText(be, scale);
}

}  // namespace



bool NativelyEncoded(duckdb_logical_type type) {
  switch (duckdb_get_type_id(type)) {
    case DUCKDB_TYPE_BOOLEAN:
    case DUCKDB_TYPE_TINYINT:
    case DUCKDB_TYPE_SMALLINT:
    case DUCKDB_TYPE_INTEGER:
    case DUCKDB_TYPE_BIGINT:
    case DUCKDB_TYPE_UTINYINT:
    case DUCKDB_TYPE_USMALLINT:
    case DUCKDB_TYPE_UINTEGER:
    case DUCKDB_TYPE_UBIGINT:
    case DUCKDB_TYPE_HUGEINT:
    case DUCKDB_TYPE_UHUGEINT:
    case DUCKDB_TYPE_FLOAT:
    case DUCKDB_TYPE_DOUBLE:
    case DUCKDB_TYPE_DECIMAL:
    case DUCKDB_TYPE_VARCHAR:
    case DUCKDB_TYPE_BLOB:
    case DUCKDB_TYPE_UUID:
    case DUCKDB_TYPE_TIMESTAMP:
    case DUCKDB_TYPE_TIMESTAMP_S:
    case DUCKDB_TYPE_TIMESTAMP_MS:
    case DUCKDB_TYPE_TIMESTAMP_NS:
    case DUCKDB_TYPE_TIMESTAMP_TZ:
    case DUCKDB_TYPE_ENUM:
      return true;
    case DUCKDB_TYPE_LIST: {
      LogicalType child(duckdb_list_type_child_type(type));
      return NativelyEncoded(child.get());
    }
    case DUCKDB_TYPE_ARRAY: {
      LogicalType child(duckdb_array_type_child_type(type));
      return NativelyEncoded(child.get());
    }
    case DUCKDB_TYPE_STRUCT: {
      const idx_t n = duckdb_struct_type_child_count(type);
      for (idx_t i = 0; i < n; ++i) {
        LogicalType child(duckdb_struct_type_child_type(type, i));
        if (!NativelyEncoded(child.get())) return false;
      }
      return true;
    }
    default:
      return false;
  }
}

void WriteCell(std::string* out, duckdb_vector vector, duckdb_logical_type type, idx_t row) {
  uint64_t* validity = duckdb_vector_get_validity(vector);
  if (validity != nullptr && !duckdb_validity_row_is_valid(validity, row)) {
    *out += "null";
    return;
  }
  auto append = [out](auto value) { fmt::format_to(std::back_inserter(*out), "{}", value); };
  switch (duckdb_get_type_id(type)) {
    case DUCKDB_TYPE_BOOLEAN: *out += At<bool>(vector, row) ? "true" : "false"; return;
    case DUCKDB_TYPE_TINYINT: append(int{At<int8_t>(vector, row)}); return;
    case DUCKDB_TYPE_SMALLINT: append(At<int16_t>(vector, row)); return;
    case DUCKDB_TYPE_INTEGER: append(At<int32_t>(vector, row)); return;
    case DUCKDB_TYPE_BIGINT: append(At<int64_t>(vector, row)); return;
    case DUCKDB_TYPE_UTINYINT: append(unsigned{At<uint8_t>(vector, row)}); return;
    case DUCKDB_TYPE_USMALLINT: append(At<uint16_t>(vector, row)); return;
    case DUCKDB_TYPE_UINTEGER: append(At<uint32_t>(vector, row)); return;
    case DUCKDB_TYPE_UBIGINT: append(At<uint64_t>(vector, row)); return;
    case DUCKDB_TYPE_HUGEINT: {
      const duckdb_hugeint& h = At<duckdb_hugeint>(vector, row);
      __int128 v = (static_cast<__int128>(h.upper) << 64) | h.lower;
      AppendJsonString(out, Int128Text(v));
      return;
    }
    case DUCKDB_TYPE_UHUGEINT: {
      const duckdb_uhugeint& h = At<duckdb_uhugeint>(vector, row);
      unsigned __int128 v = (static_cast<unsigned __int128>(h.upper) << 64) | h.lower;
      AppendJsonString(out, UInt128Text(v));
      return;
    }
    case DUCKDB_TYPE_FLOAT: AppendFloating(out, At<float>(vector, row)); return;
    case DUCKDB_TYPE_DOUBLE: AppendFloating(out, At<double>(vector, row)); return;
    case DUCKDB_TYPE_DECIMAL: {
      const int scale = duckdb_decimal_scale(type);
      __int128 unscaled = 0;
      switch (duckdb_decimal_internal_type(type)) {
        case DUCKDB_TYPE_SMALLINT: unscaled = At<int16_t>(vector, row); break;
        case DUCKDB_TYPE_INTEGER: unscaled = At<int32_t>(vector, row); break;
        case DUCKDB_TYPE_BIGINT: unscaled = At<int64_t>(vector, row); break;
        default: {
          const duckdb_hugeint& h = At<duckdb_hugeint>(vector, row);
          unscaled = (static_cast<__int128>(h.upper) << 64) | h.lower;
        }
      }
      AppendJsonString(out, DecimalFromInt128(unscaled, scale));
      return;
    }
    case DUCKDB_TYPE_VARCHAR: AppendJsonString(out, StringAt(vector, row)); return;
    case DUCKDB_TYPE_BLOB:
      out->push_back('"');
      AppendBase64(out, StringAt(vector, row));
      out->push_back('"');
      return;
    case DUCKDB_TYPE_UUID: {
      const duckdb_hugeint& h = At<duckdb_hugeint>(vector, row);
      const uint64_t hi = static_cast<uint64_t>(h.upper) ^ (uint64_t{1} << 63);
      std::string hex = fmt::format("{:016x}{:016x}", hi, h.lower);
      AppendJsonString(out, hex.substr(0, 8) + "-" + hex.substr(8, 4) + "-" + hex.substr(12, 4) + "-" +
                                hex.substr(16, 4) + "-" + hex.substr(20));
      return;
    }
    case DUCKDB_TYPE_TIMESTAMP:
    case DUCKDB_TYPE_TIMESTAMP_TZ: append(FloorDiv(At<int64_t>(vector, row), 1000)); return;
    case DUCKDB_TYPE_TIMESTAMP_S: append(At<int64_t>(vector, row) * 1000); return;
    case DUCKDB_TYPE_TIMESTAMP_MS: append(At<int64_t>(vector, row)); return;
    case DUCKDB_TYPE_TIMESTAMP_NS: append(FloorDiv(At<int64_t>(vector, row), 1'000'000)); return;
    case DUCKDB_TYPE_ENUM: {
      idx_t index = 0;
      switch (duckdb_enum_internal_type(type)) {
        case DUCKDB_TYPE_UTINYINT: index = At<uint8_t>(vector, row); break;
        case DUCKDB_TYPE_USMALLINT: index = At<uint16_t>(vector, row); break;
        default: index = At<uint32_t>(vector, row);
      }
      char* symbol = duckdb_enum_dictionary_value(type, index);
      AppendJsonString(out, symbol != nullptr ? symbol : "");
      duckdb_free(symbol);
      return;
    }
    case DUCKDB_TYPE_LIST: {
      const duckdb_list_entry& entry = At<duckdb_list_entry>(vector, row);
      LogicalType child_type(duckdb_list_type_child_type(type));
      duckdb_vector child = duckdb_list_vector_get_child(vector);
      out->push_back('[');
      for (idx_t i = 0; i < entry.length; ++i) {
        if (i > 0) out->push_back(',');
        WriteCell(out, child, child_type.get(), entry.offset + i);
      }
      out->push_back(']');
      return;
    }
    case DUCKDB_TYPE_ARRAY: {
      LogicalType child_type(duckdb_array_type_child_type(type));
      const idx_t size = duckdb_array_type_array_size(type);
      duckdb_vector child = duckdb_array_vector_get_child(vector);
      out->push_back('[');
      for (idx_t i = 0; i < size; ++i) {
        if (i > 0) out->push_back(',');
        WriteCell(out, child, child_type.get(), row * size + i);
      }
      out->push_back(']');
      return;
    }
    case DUCKDB_TYPE_STRUCT: {
      const idx_t n = duckdb_struct_type_child_count(type);
      out->push_back('{');
      for (idx_t i = 0; i < n; ++i) {
        if (i > 0) out->push_back(',');
        char* name = duckdb_struct_type_child_name(type, i);
        AppendJsonString(out, name != nullptr ? name : "");
        duckdb_free(name);
        out->push_back(':');
        LogicalType child_type(duckdb_struct_type_child_type(type, i));
        WriteCell(out, duckdb_struct_vector_get_child(vector, i), child_type.get(), row);
      }
      out->push_back('}');
      return;
    }
    default:
      // Not reached: the reading query casts other types to VARCHAR.
      *out += "null";
  }
}

}  // namespace aquifer::drivers::duckdb
