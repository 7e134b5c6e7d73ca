#pragma once

// A small Cloud Bigtable client over the generated gRPC stubs (google.bigtable.v2 and
// google.bigtable.admin.v2, proto/): what the drivers in this folder need, with the
// service's rules applied once here:
//
//  - ReadRows assembles rows from CellChunks (row_reader.h) and, when the stream breaks with
//    a retryable status, resumes after the last committed row (the row set shrunk to what is
//    left, rows_limit lowered by what arrived), as the official clients do.
//  - MutateRows sends entries in calls of at most 100,000 mutations (the service's limit) and
//    `max_request_bytes`, and retries only the entries that failed with a retryable status
//    (the others are applied), with backoff, up to `max_attempts` times.
//  - CheckAndMutateRow and ReadModifyWriteRow are never retried (not idempotent): a timeout
//    reports Timeout, the call may have happened.

#include <atomic>
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "aquifer/base/status.h"
#include "aquifer/driver/types.h"
#include "aquifer/drivers/bigtable/row_reader.h"
#include "aquifer/drivers/gcp/grpc_client.h"
#include "google/bigtable/admin/v2/bigtable_table_admin.grpc.pb.h"
#include "google/bigtable/v2/bigtable.grpc.pb.h"

namespace aquifer::drivers::bigtable {

namespace v2 = ::google::bigtable::v2;
namespace admin = ::google::bigtable::admin::v2;

inline constexpr size_t kMaxMutationsPerCall = 100'000;

struct ClientOptions {
  gcp::GrpcOptions grpc;
  std::string instance;        // the Bigtable instance id
  std::string app_profile_id;  // empty: the default profile
  size_t max_request_bytes = 3 << 20;  // per MutateRows call (under gRPC's 4 MiB default receive limit)
  int max_attempts = 5;
};

// Keys: those of gcp::ParseGrpcOptions (endpoint, project, emulator, token_env,
// request_timeout_ms; BIGTABLE_EMULATOR_HOST for the emulator), instance (required),
// app_profile_id, max_request_bytes, max_attempts.
Result<ClientOptions> ParseClientOptions(const driver::Config& config);

class Client {
 public:
  explicit Client(ClientOptions options);

  const ClientOptions& options() const { return options_; }
  // projects/<project>/instances/<instance>/tables/<table_id>
  std::string TablePath(std::string_view table_id) const;

  // Creates the table with these column families if it does not exist (an existing table is
  // taken as it is).
  Status EnsureTable(std::string_view table_id, const std::map<std::string, admin::GcRule>& families);
  Status DeleteTable(std::string_view table_id);
  // Deletes every row whose key starts with `prefix` (an empty prefix: every row).
  Status DropRowRange(std::string_view table_id, std::string_view prefix);

  // Streams the rows of `request` (its table_name set by the caller) to `on_row` in key order;
  // an error from on_row ends the read with it.
  Status ReadRows(v2::ReadRowsRequest request, const std::function<Status(Row&&)>& on_row);
  Status ReadRowsInto(v2::ReadRowsRequest request, std::vector<Row>* rows);
  // Applies the entries (each atomic for its row; no order between them).
  Status MutateRows(const std::string& table_name, std::vector<v2::MutateRowsRequest::Entry> entries);
  // Whether the predicate matched (true_mutations were applied) or not (false_mutations).
  Result<bool> CheckAndMutateRow(v2::CheckAndMutateRowRequest request);
  Result<v2::Row> ReadModifyWriteRow(v2::ReadModifyWriteRowRequest request);

  // MutateRows calls sent so far, retries included (tests and benchmarks).
  int64_t mutate_calls() const { return mutate_calls_.load(std::memory_order_relaxed); }

 private:
  Status MutateBatch(const std::string& table_name, std::vector<v2::MutateRowsRequest::Entry>* entries);

  const ClientOptions options_;
  std::shared_ptr<grpc::Channel> channel_;
  std::unique_ptr<v2::Bigtable::Stub> data_;
  std::unique_ptr<admin::BigtableTableAdmin::Stub> admin_;
  std::atomic<int64_t> mutate_calls_{0};
};

// What is left of `rows` after every key up to and including `last` was read (how a broken
// ReadRows stream is resumed). Empty when nothing is left: the caller must not send it (an empty
// row set means the whole table).
v2::RowSet RemainingRows(const v2::RowSet& rows, const std::string& last);

// Filters and mutations the drivers build often.
v2::RowFilter LatestCellFilter();  // the newest cell of each column
v2::RowFilter ColumnFilter(std::string_view family, std::string_view qualifier);  // that column only, newest cell
// A RE2 pattern matching exactly `bytes` (every byte escaped).
std::string ExactRegex(std::string_view bytes);
void AddSetCell(google::protobuf::RepeatedPtrField<v2::Mutation>* mutations, std::string_view family,
                std::string_view qualifier, std::string_view value, int64_t timestamp_micros = 0);
std::string EncodeInt64(int64_t value);                   // 8 bytes big-endian, as Bigtable's increments
Result<int64_t> DecodeInt64(std::string_view bytes);      // the inverse; Corruption unless 8 bytes

}  // namespace aquifer::drivers::bigtable
