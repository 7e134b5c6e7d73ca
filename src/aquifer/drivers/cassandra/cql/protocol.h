#pragma once

// The CQL native protocol, version 4 (Cassandra's doc/native_protocol_v4.spec):
// pure encoding and decoding of frames and their bodies, no I/O. client.h
// sends what this builds and decodes what it reads with these functions.
//
// A frame is a 9-byte header then a body:
//   version (1: 0x04 request, 0x84 response), flags (1: 0x02 tracing,
//   0x04 custom payload, 0x08 warnings; we never ask for compression),
//   stream (2, signed), opcode (1), body length (4, at most kMaxBodyLength).
// Bodies are built from the spec's notations: [int] 4 bytes and [short] 2 bytes
// big-endian, [string] a [short] length then UTF-8, [long string] an [int]
// length, [bytes] an [int] length (negative: null), [short bytes] a [short]
// length, [value] like [bytes] where -2 is "unset".
//
// Every decoder checks every length against what is left, so a truncated or
// hostile body gives Corruption, never a read past the end
// (fuzz/cql_frame_fuzz.cc holds it to that).

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <variant>
#include <vector>

#include "aquifer/base/status.h"

namespace aquifer::drivers::cassandra::cql {

inline constexpr uint8_t kRequestVersion = 0x04;
inline constexpr uint8_t kResponseVersion = 0x84;
inline constexpr size_t kHeaderSize = 9;
inline constexpr int32_t kMaxBodyLength = 256 * 1024 * 1024;  // the spec's frame limit

enum class Opcode : uint8_t {
  kError = 0x00, kStartup = 0x01, kReady = 0x02, kAuthenticate = 0x03, kOptions = 0x05,
  kSupported = 0x06, kQuery = 0x07, kResult = 0x08, kPrepare = 0x09, kExecute = 0x0A,
  kRegister = 0x0B, kEvent = 0x0C, kBatch = 0x0D, kAuthChallenge = 0x0E, kAuthResponse = 0x0F,
  kAuthSuccess = 0x10,
};

enum class Consistency : uint16_t {
  kAny = 0, kOne = 1, kTwo = 2, kThree = 3, kQuorum = 4, kAll = 5, kLocalQuorum = 6,
  kEachQuorum = 7, kSerial = 8, kLocalSerial = 9, kLocalOne = 10,
};
// "ONE" → kOne (case-insensitive); InvalidArgument naming the choices otherwise.
Result<Consistency> ParseConsistency(std::string_view name);
std::string_view ConsistencyName(Consistency consistency);

// Column type ids ([option] ids of the spec) the client decodes.
enum class TypeId : uint16_t {
  kCustom = 0x0000, kAscii = 0x0001, kBigint = 0x0002, kBlob = 0x0003, kBoolean = 0x0004,
  kCounter = 0x0005, kDecimal = 0x0006, kDouble = 0x0007, kFloat = 0x0008, kInt = 0x0009,
  kTimestamp = 0x000B, kUuid = 0x000C, kVarchar = 0x000D, kVarint = 0x000E, kTimeuuid = 0x000F,
  kInet = 0x0010, kDate = 0x0011, kTime = 0x0012, kSmallint = 0x0013, kTinyint = 0x0014,
  kDuration = 0x0015, kList = 0x0020, kMap = 0x0021, kSet = 0x0022, kUdt = 0x0030, kTuple = 0x0031,
};

// A bound value. Encoded by its alternative: Null → length -1; int32_t → [int]
// (int); int64_t → 8 bytes (bigint, counter, timestamp); bool → 1 byte; Blob
// and std::string → the raw bytes (blob; text).
struct Null {};
struct Blob {
  std::string bytes;
};
using Value = std::variant<Null, int32_t, int64_t, bool, Blob, std::string>;

struct FrameHeader {
  uint8_t version = 0;
  uint8_t flags = 0;
  int16_t stream = 0;
  Opcode opcode = Opcode::kError;
  int32_t length = 0;
};

// Decodes the 9 header bytes: Corruption for a version other than 0x84, an
// unknown opcode, or a length outside [0, kMaxBodyLength].
Result<FrameHeader> DecodeHeader(std::string_view bytes);
// A complete request frame: header (version 0x04, flags 0) and body.
std::string EncodeFrame(int16_t stream, Opcode opcode, std::string_view body);

// Appends the spec's notations to a body.
class BodyWriter {
 public:
  BodyWriter& Byte(uint8_t v);
  BodyWriter& Short(uint16_t v);
  BodyWriter& Int(int32_t v);
  BodyWriter& Long(int64_t v);
  BodyWriter& String(std::string_view v);
  BodyWriter& LongString(std::string_view v);
  BodyWriter& Bytes(std::string_view v);
  BodyWriter& ShortBytes(std::string_view v);
  BodyWriter& BoundValue(const Value& v);
  BodyWriter& StringMap(const std::vector<std::pair<std::string, std::string>>& map);
  const std::string& data() const { return out_; }
  std::string Take() { return std::move(out_); }

 private:
  std::string out_;
};

// Reads the spec's notations from a body; every read checks the length.
class BodyReader {
 public:
  explicit BodyReader(std::string_view data) : data_(data) {}
  Result<uint8_t> Byte();
  Result<uint16_t> Short();
  Result<int32_t> Int();
  Result<int64_t> Long();
  Result<std::string_view> String();
  Result<std::string_view> LongString();
  Result<std::optional<std::string_view>> Bytes();  // nullopt: null
  Result<std::string_view> ShortBytes();
  Result<std::vector<std::string>> StringList();
  Result<std::string_view> Raw(size_t n);
  size_t remaining() const { return data_.size(); }

 private:
  std::string_view data_;
};

// A column of a result or of a prepared statement's bind markers.
struct ColumnSpec {
  std::string keyspace, table, name;
  TypeId type = TypeId::kCustom;
};

struct RowsMetadata {
  std::vector<ColumnSpec> columns;
  std::optional<std::string> paging_state;  // set: more pages follow
  bool no_metadata = false;
  int32_t column_count = 0;
};

// One cell per column; nullopt is a null cell. Values are the raw bytes.
using Row = std::vector<std::optional<std::string>>;

struct Rows {
  RowsMetadata metadata;
  std::vector<Row> rows;
};

struct Prepared {
  std::string id;
  std::vector<ColumnSpec> bind_columns;
  RowsMetadata result_metadata;
};

struct SchemaChange {
  std::string change_type, target, keyspace, name;
};

enum class ResultKind : int32_t { kVoid = 1, kRows = 2, kSetKeyspace = 3, kPrepared = 4, kSchemaChange = 5 };

// A decoded RESULT body.
struct ResultBody {
  ResultKind kind = ResultKind::kVoid;
  Rows rows;             // kRows
  Prepared prepared;     // kPrepared
  std::string keyspace;  // kSetKeyspace
  SchemaChange schema_change;
};

// The server's error codes (the spec's section 9).
enum class ErrorCode : int32_t {
  kServerError = 0x0000, kProtocolError = 0x000A, kBadCredentials = 0x0100,
  kUnavailable = 0x1000, kOverloaded = 0x1001, kIsBootstrapping = 0x1002, kTruncateError = 0x1003,
  kWriteTimeout = 0x1100, kReadTimeout = 0x1200, kReadFailure = 0x1300, kFunctionFailure = 0x1400,
  kWriteFailure = 0x1500, kSyntaxError = 0x2000, kUnauthorized = 0x2100, kInvalid = 0x2200,
  kConfigError = 0x2300, kAlreadyExists = 0x2400, kUnprepared = 0x2500,
};

struct ServerError {
  int32_t code = 0;
  std::string message;
  std::string unprepared_id;  // kUnprepared: the statement id the server no longer knows
  std::string write_type;     // kWriteTimeout/kWriteFailure: SIMPLE, BATCH, CAS, COUNTER...
};

// Strips what a response's flags put before its body (tracing id, warnings,
// custom payload) and returns the rest.
Result<std::string_view> SkipResponsePrefix(uint8_t flags, std::string_view body);
Result<ResultBody> DecodeResult(std::string_view body);
Result<ServerError> DecodeError(std::string_view body);
std::string_view ErrorCodeName(int32_t code);

// Maps a server error to a Status, its message "<context>: <server message>
// (<code name>)":
//   Unavailable, Overloaded, IsBootstrapping, ReadTimeout, ReadFailure,
//   TruncateError                          → Unavailable (nothing changed; retry)
//   WriteTimeout, WriteFailure             → Timeout (the write may or may not have happened)
//   SyntaxError, Invalid, ConfigError,
//   FunctionFailure                        → InvalidArgument
//   AlreadyExists                          → AlreadyExists
//   BadCredentials                         → Unauthenticated
//   Unauthorized                           → PermissionDenied
//   Unprepared                             → FailedPrecondition (the client re-prepares first)
//   ServerError, ProtocolError, unknown    → Internal
Status StatusFromServerError(const ServerError& error, std::string_view context);

// Cell decoders: Corruption when the bytes do not have the type's size.
Result<int64_t> DecodeBigint(std::string_view cell);  // bigint, counter, timestamp (8 bytes)
Result<int32_t> DecodeInt(std::string_view cell);     // int (4 bytes)
Result<bool> DecodeBoolean(std::string_view cell);    // boolean (1 byte)

}  // namespace aquifer::drivers::cassandra::cql
