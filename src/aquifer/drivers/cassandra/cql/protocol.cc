#include "aquifer/drivers/cassandra/cql/protocol.h"

#include <algorithm>
#include <cctype>

#include <fmt/format.h>

namespace aquifer::drivers::cassandra::cql {
namespace {

Status Truncated(std::string_view what, size_t want, size_t have) {
  return Corruption("cql: truncated body reading {}: {} bytes wanted, {} left", what, want, have);
}

constexpr std::pair<Consistency, std::string_view> kConsistencyNames[] = {
    {Consistency::kAny, "ANY"},           {Consistency::kOne, "ONE"},
    {Consistency::kTwo, "TWO"},           {Consistency::kThree, "THREE"},
    {Consistency::kQuorum, "QUORUM"},     {Consistency::kAll, "ALL"},
    {Consistency::kLocalQuorum, "LOCAL_QUORUM"}, {Consistency::kEachQuorum, "EACH_QUORUM"},
    {Consistency::kSerial, "SERIAL"},     {Consistency::kLocalSerial, "LOCAL_SERIAL"},
    {Consistency::kLocalOne, "LOCAL_ONE"},
};

// An [option]: the type id and, for collections, UDTs and tuples, their parts
// (read and dropped: the client only decodes scalar cells).
Result<TypeId> ReadOption(BodyReader& reader, int depth = 0) {
  if (depth > 16) return Corruption("cql: type options nested deeper than 16");
  AQ_ASSIGN_OR_RETURN(uint16_t id, reader.Short());
  switch (id) {
    case 0x0000: {
      AQ_ASSIGN_OR_RETURN(auto name, reader.String());
      (void)name;
      break;
    }
    case 0x0020:
    case 0x0022: {
      AQ_ASSIGN_OR_RETURN(auto element, ReadOption(reader, depth + 1));
      (void)element;
      break;
    }
    case 0x0021: {
      AQ_ASSIGN_OR_RETURN(auto key, ReadOption(reader, depth + 1));
      AQ_ASSIGN_OR_RETURN(auto value, ReadOption(reader, depth + 1));
      (void)key, (void)value;
      break;
    }
    case 0x0030: {
      AQ_ASSIGN_OR_RETURN(auto keyspace, reader.String());
      AQ_ASSIGN_OR_RETURN(auto name, reader.String());
      AQ_ASSIGN_OR_RETURN(uint16_t fields, reader.Short());
      (void)keyspace, (void)name;
      for (uint16_t field_idx = 0; field_idx < fields; ++field_idx) {
        AQ_ASSIGN_OR_RETURN(auto field, reader.String());
        AQ_ASSIGN_OR_RETURN(auto type, ReadOption(reader, depth + 1));
        (void)field, (void)type;
      }
      break;
    }
    case 0x0031: {
      AQ_ASSIGN_OR_RETURN(uint16_t parts, reader.Short());
      for (uint16_t part_idx = 0; part_idx < parts; ++part_idx) {
        AQ_ASSIGN_OR_RETURN(auto type, ReadOption(reader, depth + 1));
        (void)type;
      }
      break;
    }
    default:
      if (id > 0x0015) return Corruption("cql: unknown type option 0x{:04x}", id);
  }
  return static_cast<TypeId>(id);
}

Result<std::vector<ColumnSpec>> ReadColumnSpecs(BodyReader& reader, int32_t count, bool global) {
  if (count < 0) return Corruption("cql: negative column count {}", count);
  std::string keyspace, table;
  if (global) {
    AQ_ASSIGN_OR_RETURN(auto ks, reader.String());
    AQ_ASSIGN_OR_RETURN(auto tb, reader.String());
    keyspace = ks, table = tb;
  }
  // Each spec takes at least 4 bytes: bound the allocation by what is left.
  if (static_cast<size_t>(count) > reader.remaining() / 4 + 1) {
    return Corruption("cql: {} columns cannot fit in {} bytes", count, reader.remaining());
  }
  std::vector<ColumnSpec> columns;
  columns.reserve(count);
  for (int32_t column_idx = 0; column_idx < count; ++column_idx) {
    ColumnSpec spec;
    if (global) {
      spec.keyspace = keyspace, spec.table = table;
    } else {
      AQ_ASSIGN_OR_RETURN(auto ks, reader.String());
      AQ_ASSIGN_OR_RETURN(auto tb, reader.String());
      spec.keyspace = ks, spec.table = tb;
    }
    AQ_ASSIGN_OR_RETURN(auto name, reader.String());
    spec.name = name;
    AQ_ASSIGN_OR_RETURN(spec.type, ReadOption(reader));
    columns.push_back(std::move(spec));
  }
  return columns;
}

Result<RowsMetadata> ReadRowsMetadata(BodyReader& reader) {
  RowsMetadata metadata;
  AQ_ASSIGN_OR_RETURN(int32_t flags, reader.Int());
  AQ_ASSIGN_OR_RETURN(metadata.column_count, reader.Int());
  if (metadata.column_count < 0) return Corruption("cql: negative column count {}", metadata.column_count);
  if (flags & 0x0002) {
    AQ_ASSIGN_OR_RETURN(auto state, reader.Bytes());
    if (state) metadata.paging_state = std::string(*state);
  }
  metadata.no_metadata = (flags & 0x0004) != 0;
  if (!metadata.no_metadata) {
    AQ_ASSIGN_OR_RETURN(metadata.columns, ReadColumnSpecs(reader, metadata.column_count, (flags & 0x0001) != 0));
  }
  return metadata;
}

}  // namespace

Result<Consistency> ParseConsistency(std::string_view name) {
  std::string upper(name);
  std::transform(upper.begin(), upper.end(), upper.begin(), [](unsigned char c) { return std::toupper(c); });
  std::string choices;
  for (const auto& [level, level_name] : kConsistencyNames) {
    if (upper == level_name) return level;
    choices += choices.empty() ? "" : ", ";
    choices += level_name;
  }
  return InvalidArgument("cql: unknown consistency level '{}' (one of {})", name, choices);
}

std::string_view ConsistencyName(Consistency consistency) {
  for (const auto& [level, level_name] : kConsistencyNames) {
    if (level == consistency) return level_name;
  }
  return "UNKNOWN";
}

Result<FrameHeader> DecodeHeader(std::string_view bytes) {
  if (bytes.size() < kHeaderSize) return Truncated("frame header", kHeaderSize, bytes.size());
  FrameHeader header;
  header.version = static_cast<uint8_t>(bytes[0]);
  header.flags = static_cast<uint8_t>(bytes[1]);
  header.stream = static_cast<int16_t>((static_cast<uint8_t>(bytes[2]) << 8) | static_cast<uint8_t>(bytes[3]));
  const uint8_t opcode = static_cast<uint8_t>(bytes[4]);
  header.length = static_cast<int32_t>((static_cast<uint32_t>(static_cast<uint8_t>(bytes[5])) << 24) |
                                       (static_cast<uint32_t>(static_cast<uint8_t>(bytes[6])) << 16) |
                                       (static_cast<uint32_t>(static_cast<uint8_t>(bytes[7])) << 8) |
                                       static_cast<uint32_t>(static_cast<uint8_t>(bytes[8])));
  if (header.version != kResponseVersion) {
    return Corruption("cql: response frame of protocol version 0x{:02x}, expected 0x{:02x}", header.version,
                      kResponseVersion);
  }
  if (opcode > 0x10 || opcode == 0x04) return Corruption("cql: unknown opcode 0x{:02x}", opcode);
  header.opcode = static_cast<Opcode>(opcode);
  if (header.length < 0 || header.length > kMaxBodyLength) {
    return Corruption("cql: frame body length {} outside [0, {}]", header.length, kMaxBodyLength);
  }
  return header;
}

std::string EncodeFrame(int16_t stream, Opcode opcode, std::string_view body) {
  BodyWriter writer;
  writer.Byte(kRequestVersion).Byte(0).Short(static_cast<uint16_t>(stream)).Byte(static_cast<uint8_t>(opcode));
  writer.Int(static_cast<int32_t>(body.size()));
  std::string frame = writer.Take();
  frame.append(body);
  return frame;
}

BodyWriter& BodyWriter::Byte(uint8_t v) {
  out_.push_back(static_cast<char>(v));
  return *this;
}
BodyWriter& BodyWriter::Short(uint16_t v) {
  out_.push_back(static_cast<char>(v >> 8));
  out_.push_back(static_cast<char>(v));
  return *this;
}
BodyWriter& BodyWriter::Int(int32_t v) {
  const uint32_t u = static_cast<uint32_t>(v);
  for (int shift = 24; shift >= 0; shift -= 8) out_.push_back(static_cast<char>(u >> shift));
  return *this;
}
BodyWriter& BodyWriter::Long(int64_t v) {
  const uint64_t u = static_cast<uint64_t>(v);
  for (int shift = 56; shift >= 0; shift -= 8) out_.push_back(static_cast<char>(u >> shift));
  return *this;
}
BodyWriter& BodyWriter::String(std::string_view v) {
  Short(static_cast<uint16_t>(v.size()));
  out_.append(v);
  return *this;
}
BodyWriter& BodyWriter::LongString(std::string_view v) {
  Int(static_cast<int32_t>(v.size()));
  out_.append(v);
  return *this;
}
BodyWriter& BodyWriter::Bytes(std::string_view v) { return LongString(v); }
BodyWriter& BodyWriter::ShortBytes(std::string_view v) { return String(v); }
BodyWriter& BodyWriter::BoundValue(const Value& v) {
  struct Visitor {
    BodyWriter* w;
    void operator()(const Null&) { w->Int(-1); }
    void operator()(int32_t x) { w->Int(4).Int(x); }
    void operator()(int64_t x) { w->Int(8).Long(x); }
    void operator()(bool x) { w->Int(1).Byte(x ? 1 : 0); }
    void operator()(const Blob& x) { w->Bytes(x.bytes); }
    void operator()(const std::string& x) { w->Bytes(x); }
  };
  std::visit(Visitor{this}, v);
  return *this;
}
BodyWriter& BodyWriter::StringMap(const std::vector<std::pair<std::string, std::string>>& map) {
  Short(static_cast<uint16_t>(map.size()));
  for (const auto& [key, value] : map) String(key).String(value);
  return *this;
}

Result<std::string_view> BodyReader::Raw(size_t n) {
  if (data_.size() < n) return Truncated("raw bytes", n, data_.size());
  std::string_view out = data_.substr(0, n);
  data_.remove_prefix(n);
  return out;
}
Result<uint8_t> BodyReader::Byte() {
  AQ_ASSIGN_OR_RETURN(auto raw, Raw(1));
  return static_cast<uint8_t>(raw[0]);
}
Result<uint16_t> BodyReader::Short() {
  AQ_ASSIGN_OR_RETURN(auto raw, Raw(2));
  return static_cast<uint16_t>((static_cast<uint8_t>(raw[0]) << 8) | static_cast<uint8_t>(raw[1]));
}
Result<int32_t> BodyReader::Int() {
  AQ_ASSIGN_OR_RETURN(auto raw, Raw(4));
  uint32_t u = 0;
  for (char c : raw) u = (u << 8) | static_cast<uint8_t>(c);
  return static_cast<int32_t>(u);
}
Result<int64_t> BodyReader::Long() {
  AQ_ASSIGN_OR_RETURN(auto raw, Raw(8));
  uint64_t u = 0;
  for (char c : raw) u = (u << 8) | static_cast<uint8_t>(c);
  return static_cast<int64_t>(u);
}
Result<std::string_view> BodyReader::String() {
  AQ_ASSIGN_OR_RETURN(uint16_t n, Short());
  return Raw(n);
}
Result<std::string_view> BodyReader::LongString() {
  AQ_ASSIGN_OR_RETURN(int32_t n, Int());
  if (n < 0) return Corruption("cql: negative long string length {}", n);
  return Raw(static_cast<size_t>(n));
}
Result<std::optional<std::string_view>> BodyReader::Bytes() {
  AQ_ASSIGN_OR_RETURN(int32_t n, Int());
  if (n < 0) return std::optional<std::string_view>();
  AQ_ASSIGN_OR_RETURN(auto raw, Raw(static_cast<size_t>(n)));
  return std::optional<std::string_view>(raw);
}
Result<std::string_view> BodyReader::ShortBytes() { return String(); }
Result<std::vector<std::string>> BodyReader::StringList() {
  AQ_ASSIGN_OR_RETURN(uint16_t n, Short());
  std::vector<std::string> list;
  for (uint16_t item_idx = 0; item_idx < n; ++item_idx) {
    AQ_ASSIGN_OR_RETURN(auto item, String());
    list.emplace_back(item);
  }
  return list;
}

Result<std::string_view> SkipResponsePrefix(uint8_t flags, std::string_view body) {
  BodyReader reader(body);
  if (flags & 0x02) AQ_RETURN_IF_ERROR(reader.Raw(16).status());  // tracing session id
  if (flags & 0x08) AQ_RETURN_IF_ERROR(reader.StringList().status());  // warnings
  if (flags & 0x04) {  // custom payload: [bytes map]
    AQ_ASSIGN_OR_RETURN(uint16_t n, reader.Short());
    for (uint16_t entry_idx = 0; entry_idx < n; ++entry_idx) {
      AQ_RETURN_IF_ERROR(reader.String().status());
      AQ_RETURN_IF_ERROR(reader.Bytes().status());
    }
  }
  return body.substr(body.size() - reader.remaining());
}

Result<ResultBody> DecodeResult(std::string_view body) {
  BodyReader reader(body);
  ResultBody result;
  AQ_ASSIGN_OR_RETURN(int32_t kind, reader.Int());
  switch (kind) {
    case 1: result.kind = ResultKind::kVoid; break;
    case 2: {
      result.kind = ResultKind::kRows;
      AQ_ASSIGN_OR_RETURN(result.rows.metadata, ReadRowsMetadata(reader));
      AQ_ASSIGN_OR_RETURN(int32_t row_count, reader.Int());
      const int32_t columns = result.rows.metadata.column_count;
      if (row_count < 0) return Corruption("cql: negative row count {}", row_count);
      // Each cell takes at least 4 bytes.
      if (columns > 0 && static_cast<uint64_t>(row_count) * columns > reader.remaining() / 4) {
        return Corruption("cql: {} rows of {} columns cannot fit in {} bytes", row_count, columns, reader.remaining());
      }
      if (columns == 0 && row_count > 0) return Corruption("cql: {} rows without columns", row_count);
      result.rows.rows.reserve(row_count);
      for (int32_t row_idx = 0; row_idx < row_count; ++row_idx) {
        Row row;
        row.reserve(columns);
        for (int32_t column_idx = 0; column_idx < columns; ++column_idx) {
          AQ_ASSIGN_OR_RETURN(auto cell, reader.Bytes());
          row.push_back(cell ? std::optional<std::string>(std::string(*cell)) : std::nullopt);
        }
        result.rows.rows.push_back(std::move(row));
      }
      break;
    }
    case 3: {
      result.kind = ResultKind::kSetKeyspace;
      AQ_ASSIGN_OR_RETURN(auto keyspace, reader.String());
      result.keyspace = keyspace;
      break;
    }
    case 4: {
      result.kind = ResultKind::kPrepared;
      AQ_ASSIGN_OR_RETURN(auto id, reader.ShortBytes());
      result.prepared.id = id;
      AQ_ASSIGN_OR_RETURN(int32_t flags, reader.Int());
      AQ_ASSIGN_OR_RETURN(int32_t columns, reader.Int());
      AQ_ASSIGN_OR_RETURN(int32_t pk_count, reader.Int());
      if (pk_count < 0 || pk_count > 65535) return Corruption("cql: partition key count {}", pk_count);
      for (int32_t pk_idx = 0; pk_idx < pk_count; ++pk_idx) AQ_RETURN_IF_ERROR(reader.Short().status());
      AQ_ASSIGN_OR_RETURN(result.prepared.bind_columns, ReadColumnSpecs(reader, columns, (flags & 0x0001) != 0));
      AQ_ASSIGN_OR_RETURN(result.prepared.result_metadata, ReadRowsMetadata(reader));
      break;
    }
    case 5: {
      result.kind = ResultKind::kSchemaChange;
      AQ_ASSIGN_OR_RETURN(auto change, reader.String());
      AQ_ASSIGN_OR_RETURN(auto target, reader.String());
      AQ_ASSIGN_OR_RETURN(auto keyspace, reader.String());
      result.schema_change.change_type = change;
      result.schema_change.target = target;
      result.schema_change.keyspace = keyspace;
      if (target != "KEYSPACE") {
        AQ_ASSIGN_OR_RETURN(auto name, reader.String());
        result.schema_change.name = name;
        if (target == "FUNCTION" || target == "AGGREGATE") AQ_RETURN_IF_ERROR(reader.StringList().status());
      }
      break;
    }
    default: return Corruption("cql: unknown result kind {}", kind);
  }
  return result;
}

Result<ServerError> DecodeError(std::string_view body) {
  BodyReader reader(body);
  ServerError error;
  AQ_ASSIGN_OR_RETURN(error.code, reader.Int());
  AQ_ASSIGN_OR_RETURN(auto message, reader.String());
  error.message = message;
  if (error.code == static_cast<int32_t>(ErrorCode::kUnprepared)) {
    AQ_ASSIGN_OR_RETURN(auto id, reader.ShortBytes());
    error.unprepared_id = id;
  } else if (error.code == static_cast<int32_t>(ErrorCode::kWriteTimeout)) {
    AQ_RETURN_IF_ERROR(reader.Raw(2 + 4 + 4).status());  // consistency, received, block for
    AQ_ASSIGN_OR_RETURN(auto write_type, reader.String());
    error.write_type = write_type;
  } else if (error.code == static_cast<int32_t>(ErrorCode::kWriteFailure)) {
    AQ_RETURN_IF_ERROR(reader.Raw(2 + 4 + 4).status());
    AQ_ASSIGN_OR_RETURN(int32_t failures, reader.Int());  // v5 sends a reason map; v4 a count
    (void)failures;
    AQ_ASSIGN_OR_RETURN(auto write_type, reader.String());
    error.write_type = write_type;
  }
  // The other codes' extra fields (consistency, counts, keyspace...) are not needed.
  return error;
}

std::string_view ErrorCodeName(int32_t code) {
  switch (static_cast<ErrorCode>(code)) {
    case ErrorCode::kServerError: return "ServerError";
    case ErrorCode::kProtocolError: return "ProtocolError";
    case ErrorCode::kBadCredentials: return "BadCredentials";
    case ErrorCode::kUnavailable: return "Unavailable";
    case ErrorCode::kOverloaded: return "Overloaded";
    case ErrorCode::kIsBootstrapping: return "IsBootstrapping";
    case ErrorCode::kTruncateError: return "TruncateError";
    case ErrorCode::kWriteTimeout: return "WriteTimeout";
    case ErrorCode::kReadTimeout: return "ReadTimeout";
    case ErrorCode::kReadFailure: return "ReadFailure";
    case ErrorCode::kFunctionFailure: return "FunctionFailure";
    case ErrorCode::kWriteFailure: return "WriteFailure";
    case ErrorCode::kSyntaxError: return "SyntaxError";
    case ErrorCode::kUnauthorized: return "Unauthorized";
    case ErrorCode::kInvalid: return "Invalid";
    case ErrorCode::kConfigError: return "ConfigError";
    case ErrorCode::kAlreadyExists: return "AlreadyExists";
    case ErrorCode::kUnprepared: return "Unprepared";
  }
  return "UnknownError";
}

Status StatusFromServerError(const ServerError& error, std::string_view context) {
  const std::string message =
      fmt::format("{}: {} ({} 0x{:04x})", context, error.message, ErrorCodeName(error.code), error.code);
  switch (static_cast<ErrorCode>(error.code)) {
    case ErrorCode::kUnavailable:
    case ErrorCode::kOverloaded:
    case ErrorCode::kIsBootstrapping:
    case ErrorCode::kReadTimeout:
    case ErrorCode::kReadFailure:
    case ErrorCode::kTruncateError:
      return Status(StatusCode::kUnavailable, message);
    case ErrorCode::kWriteTimeout:
    case ErrorCode::kWriteFailure:
      return Status(StatusCode::kTimeout, message + "; the write may or may not have been applied");
    case ErrorCode::kSyntaxError:
    case ErrorCode::kInvalid:
    case ErrorCode::kConfigError:
    case ErrorCode::kFunctionFailure:
      return Status(StatusCode::kInvalidArgument, message);
    case ErrorCode::kAlreadyExists: return Status(StatusCode::kAlreadyExists, message);
    case ErrorCode::kBadCredentials: return Status(StatusCode::kUnauthenticated, message);
    case ErrorCode::kUnauthorized: return Status(StatusCode::kPermissionDenied, message);
    case ErrorCode::kUnprepared: return Status(StatusCode::kFailedPrecondition, message);
    case ErrorCode::kServerError:
    case ErrorCode::kProtocolError:
      break;
  }
  return Status(StatusCode::kInternal, message);
}

Result<int64_t> DecodeBigint(std::string_view cell) {
  if (cell.size() != 8) return Corruption("cql: a bigint cell of {} bytes, expected 8", cell.size());
  BodyReader reader(cell);
  return reader.Long();
}
Result<int32_t> DecodeInt(std::string_view cell) {
  if (cell.size() != 4) return Corruption("cql: an int cell of {} bytes, expected 4", cell.size());
  BodyReader reader(cell);
  return reader.Int();
}
Result<bool> DecodeBoolean(std::string_view cell) {
  if (cell.size() != 1) return Corruption("cql: a boolean cell of {} bytes, expected 1", cell.size());
  return cell[0] != 0;
}

}  // namespace aquifer::drivers::cassandra::cql
