#include "aquifer/drivers/bigtable/client.h"

#include <algorithm>
#include <chrono>
#include <thread>

#include <fmt/format.h>

namespace aquifer::drivers::bigtable {
namespace {

void Backoff(int attempt) {
  std::this_thread::sleep_for(std::chrono::milliseconds(std::min(20 << attempt, 1000)));
}

size_t EntryBytes(const v2::MutateRowsRequest::Entry& entry) { return entry.ByteSizeLong() + 8; }

}  // namespace

v2::RowSet RemainingRows(const v2::RowSet& rows, const std::string& last) {
  v2::RowSet left;
  for (const std::string& key : rows.row_keys()) {
    if (key > last) left.add_row_keys(key);
  }
  for (const v2::RowRange& range : rows.row_ranges()) {
    if (range.has_end_key_open() && range.end_key_open() <= last) continue;
    if (range.has_end_key_closed() && range.end_key_closed() <= last) continue;
    v2::RowRange kept = range;
    const bool starts_after = (range.has_start_key_closed() && range.start_key_closed() > last) ||
                              (range.has_start_key_open() && range.start_key_open() >= last);
    if (!starts_after) kept.set_start_key_open(last);
    *left.add_row_ranges() = std::move(kept);
  }
  return left;
}

Result<ClientOptions> ParseClientOptions(const driver::Config& config) {
  ClientOptions options;
  AQ_ASSIGN_OR_RETURN(options.grpc,
                      gcp::ParseGrpcOptions(config, "bigtable", "bigtable.googleapis.com:443", "BIGTABLE_EMULATOR_HOST"));
  options.instance = driver::ConfigString(config, "instance", "");
  if (options.instance.empty()) return InvalidArgument("bigtable: `instance` is required");
  options.app_profile_id = driver::ConfigString(config, "app_profile_id", "");
  AQ_ASSIGN_OR_RETURN(int64_t bytes, driver::ConfigInt(config, "max_request_bytes", static_cast<int64_t>(options.max_request_bytes)));
  if (bytes < 1024 || bytes > (256 << 20)) return InvalidArgument("bigtable: max_request_bytes {} outside [1024, 256 MiB]", bytes);
  options.max_request_bytes = static_cast<size_t>(bytes);
  AQ_ASSIGN_OR_RETURN(int64_t attempts, driver::ConfigInt(config, "max_attempts", options.max_attempts));
  if (attempts < 1 || attempts > 100) return InvalidArgument("bigtable: max_attempts {} outside [1, 100]", attempts);
  options.max_attempts = static_cast<int>(attempts);
  return options;
}

Client::Client(ClientOptions options)
    : options_(std::move(options)),
      channel_(gcp::MakeChannel(options_.grpc)),
      data_(v2::Bigtable::NewStub(channel_)),
      admin_(admin::BigtableTableAdmin::NewStub(channel_)) {}

std::string Client::TablePath(std::string_view table_id) const {
  return fmt::format("projects/{}/instances/{}/tables/{}", options_.grpc.project, options_.instance, table_id);
}

Status Client::EnsureTable(std::string_view table_id, const std::map<std::string, admin::GcRule>& families) {
  admin::CreateTableRequest request;
  request.set_parent(fmt::format("projects/{}/instances/{}", options_.grpc.project, options_.instance));
  request.set_table_id(std::string(table_id));
  for (const auto& [name, rule] : families) {
    *(*request.mutable_table()->mutable_column_families())[name].mutable_gc_rule() = rule;
  }
  for (int attempt = 0;; ++attempt) {
    grpc::ClientContext context;
    AQ_RETURN_IF_ERROR(gcp::PrepareContext(&context, options_.grpc));
    admin::Table table;
    grpc::Status status = admin_->CreateTable(&context, request, &table);
    if (status.ok() || status.error_code() == grpc::StatusCode::ALREADY_EXISTS) return Status::OK();
    if (!gcp::IsRetryable(status.error_code()) || attempt + 1 >= options_.max_attempts) {
      return gcp::FromGrpc(status, fmt::format("bigtable CreateTable {}", TablePath(table_id)));
    }
    Backoff(attempt);
  }
}

Status Client::DeleteTable(std::string_view table_id) {
  admin::DeleteTableRequest request;
  request.set_name(TablePath(table_id));
  grpc::ClientContext context;
  AQ_RETURN_IF_ERROR(gcp::PrepareContext(&context, options_.grpc));
  google::protobuf::Empty empty;
  grpc::Status status = admin_->DeleteTable(&context, request, &empty);
  if (status.error_code() == grpc::StatusCode::NOT_FOUND) return Status::OK();
  return gcp::FromGrpc(status, fmt::format("bigtable DeleteTable {}", request.name()));
}

Status Client::DropRowRange(std::string_view table_id, std::string_view prefix) {
  admin::DropRowRangeRequest request;
  request.set_name(TablePath(table_id));
  if (prefix.empty()) {
    request.set_delete_all_data_from_table(true);
  } else {
    request.set_row_key_prefix(std::string(prefix));
  }
  for (int attempt = 0;; ++attempt) {
    grpc::ClientContext context;
    AQ_RETURN_IF_ERROR(gcp::PrepareContext(&context, options_.grpc));
    google::protobuf::Empty empty;
    grpc::Status status = admin_->DropRowRange(&context, request, &empty);
    if (status.ok()) return Status::OK();
    if (!gcp::IsRetryable(status.error_code()) || attempt + 1 >= options_.max_attempts) {
      return gcp::FromGrpc(status, fmt::format("bigtable DropRowRange {}", request.name()));
    }
    Backoff(attempt);
  }
}

Status Client::ReadRows(v2::ReadRowsRequest request, const std::function<Status(Row&&)>& on_row) {
  if (!options_.app_profile_id.empty()) request.set_app_profile_id(options_.app_profile_id);
  const bool limited = request.rows_limit() > 0;
  int64_t delivered = 0;
  for (int attempt = 0;; ++attempt) {
    grpc::ClientContext context;
    AQ_RETURN_IF_ERROR(gcp::PrepareContext(&context, options_.grpc));
    auto reader = data_->ReadRows(&context, request);
    RowAssembler assembler;
    v2::ReadRowsResponse response;
    std::vector<Row> rows;
    Status failed;
    while (failed.ok() && reader->Read(&response)) {
      for (const auto& chunk : response.chunks()) {
        failed = assembler.Feed(chunk, &rows);
        if (!failed.ok()) break;
      }
      for (Row& row : rows) {
        ++delivered;
        if (failed.ok()) failed = on_row(std::move(row));
      }
      rows.clear();
    }
    if (!failed.ok()) {
      context.TryCancel();
      (void)reader->Finish();
      return failed;
    }
    grpc::Status status = reader->Finish();
    if (status.ok()) return assembler.Finish();
    if (!gcp::IsRetryable(status.error_code()) || attempt + 1 >= options_.max_attempts) {
      return gcp::FromGrpc(status, fmt::format("bigtable ReadRows {}", request.table_name()));
    }
    // Resume after the last row delivered.
    if (!assembler.last_key().empty()) {
      if (!request.has_rows() || (request.rows().row_keys_size() == 0 && request.rows().row_ranges_size() == 0)) {
        request.mutable_rows()->add_row_ranges()->set_start_key_open(assembler.last_key());
      } else {
        *request.mutable_rows() = RemainingRows(request.rows(), assembler.last_key());
        if (request.rows().row_keys_size() == 0 && request.rows().row_ranges_size() == 0) return Status::OK();
      }
    }
    if (limited) {
      const int64_t left = request.rows_limit() - delivered;
      if (left <= 0) return Status::OK();
      request.set_rows_limit(left);
      delivered = 0;
    }
    Backoff(attempt);
  }
}

Status Client::ReadRowsInto(v2::ReadRowsRequest request, std::vector<Row>* rows) {
  return ReadRows(std::move(request), [rows](Row&& row) {
    rows->push_back(std::move(row));
    return Status::OK();
  });
}

Status Client::MutateRows(const std::string& table_name, std::vector<v2::MutateRowsRequest::Entry> entries) {
  std::vector<v2::MutateRowsRequest::Entry> batch;
  size_t mutations = 0, bytes = 0;
  for (auto& entry : entries) {
    const size_t entry_mutations = static_cast<size_t>(entry.mutations_size());
    const size_t entry_bytes = EntryBytes(entry);
    if (entry_mutations > kMaxMutationsPerCall) {
      return InvalidArgument("bigtable MutateRows: one row with {} mutations (at most {})", entry_mutations,
                             kMaxMutationsPerCall);
    }
    if (!batch.empty() &&
        (mutations + entry_mutations > kMaxMutationsPerCall || bytes + entry_bytes > options_.max_request_bytes)) {
      AQ_RETURN_IF_ERROR(MutateBatch(table_name, &batch));
      batch.clear();
      mutations = bytes = 0;
    }
    mutations += entry_mutations;
    bytes += entry_bytes;
    batch.push_back(std::move(entry));
  }
  if (!batch.empty()) AQ_RETURN_IF_ERROR(MutateBatch(table_name, &batch));
  return Status::OK();
}

// One call's entries; those failing with a retryable status (or left unanswered by a broken
// stream) are sent again, the rest never.
Status Client::MutateBatch(const std::string& table_name, std::vector<v2::MutateRowsRequest::Entry>* entries) {
  v2::MutateRowsRequest request;
  request.set_table_name(table_name);
  if (!options_.app_profile_id.empty()) request.set_app_profile_id(options_.app_profile_id);
  for (auto& entry : *entries) *request.add_entries() = std::move(entry);
  for (int attempt = 0;; ++attempt) {
    grpc::ClientContext context;
    AQ_RETURN_IF_ERROR(gcp::PrepareContext(&context, options_.grpc));
    mutate_calls_.fetch_add(1, std::memory_order_relaxed);
    auto reader = data_->MutateRows(&context, request);
    std::vector<bool> done(static_cast<size_t>(request.entries_size()), false);
    Status permanent;
    grpc::StatusCode last_code = grpc::StatusCode::OK;
    std::string last_message;
    v2::MutateRowsResponse response;
    while (reader->Read(&response)) {
      for (const auto& result : response.entries()) {
        if (result.index() < 0 || result.index() >= request.entries_size()) continue;
        const auto code = static_cast<grpc::StatusCode>(result.status().code());
        if (code == grpc::StatusCode::OK) {
          done[static_cast<size_t>(result.index())] = true;
        } else if (!gcp::IsRetryable(code)) {
          done[static_cast<size_t>(result.index())] = true;
          if (permanent.ok()) {
            permanent = gcp::FromGrpc(grpc::Status(code, result.status().message()),
                                      fmt::format("bigtable MutateRows {} (entry {})", table_name, result.index()));
          }
        } else {
          last_code = code;
          last_message = result.status().message();
        }
      }
    }
    grpc::Status status = reader->Finish();
    if (!permanent.ok()) return permanent;
    if (!status.ok() && !gcp::IsRetryable(status.error_code())) {
      return gcp::FromGrpc(status, fmt::format("bigtable MutateRows {}", table_name));
    }
    if (!status.ok()) {
      last_code = status.error_code();
      last_message = status.error_message();
    }
    v2::MutateRowsRequest retry;
    retry.set_table_name(request.table_name());
    retry.set_app_profile_id(request.app_profile_id());
    for (int entry_idx = 0; entry_idx < request.entries_size(); ++entry_idx) {
      if (!done[static_cast<size_t>(entry_idx)]) *retry.add_entries() = std::move(*request.mutable_entries(entry_idx));
    }
    if (retry.entries_size() == 0) return Status::OK();
    if (attempt + 1 >= options_.max_attempts) {
      return gcp::FromGrpc(grpc::Status(last_code == grpc::StatusCode::OK ? grpc::StatusCode::UNAVAILABLE : last_code,
                                        last_message.empty() ? "entries left unanswered" : last_message),
                           fmt::format("bigtable MutateRows {} ({} entries failed after {} attempts)", table_name,
                                       retry.entries_size(), attempt + 1));
    }
    request = std::move(retry);
    Backoff(attempt);
  }
}

Result<bool> Client::CheckAndMutateRow(v2::CheckAndMutateRowRequest request) {
  if (!options_.app_profile_id.empty()) request.set_app_profile_id(options_.app_profile_id);
  grpc::ClientContext context;
  AQ_RETURN_IF_ERROR(gcp::PrepareContext(&context, options_.grpc));
  v2::CheckAndMutateRowResponse response;
  grpc::Status status = data_->CheckAndMutateRow(&context, request, &response);
  if (!status.ok()) return gcp::FromGrpc(status, fmt::format("bigtable CheckAndMutateRow {}", request.table_name()));
  return response.predicate_matched();
}

Result<v2::Row> Client::ReadModifyWriteRow(v2::ReadModifyWriteRowRequest request) {
  if (!options_.app_profile_id.empty()) request.set_app_profile_id(options_.app_profile_id);
  grpc::ClientContext context;
  AQ_RETURN_IF_ERROR(gcp::PrepareContext(&context, options_.grpc));
  v2::ReadModifyWriteRowResponse response;
  grpc::Status status = data_->ReadModifyWriteRow(&context, request, &response);
  if (!status.ok()) return gcp::FromGrpc(status, fmt::format("bigtable ReadModifyWriteRow {}", request.table_name()));
  return std::move(*response.mutable_row());
}

v2::RowFilter LatestCellFilter() {
  v2::RowFilter filter;
  filter.set_cells_per_column_limit_filter(1);
  return filter;
}

v2::RowFilter ColumnFilter(std::string_view family, std::string_view qualifier) {
  v2::RowFilter filter;
  auto* chain = filter.mutable_chain();
  chain->add_filters()->set_family_name_regex_filter(ExactRegex(family));
  chain->add_filters()->set_column_qualifier_regex_filter(ExactRegex(qualifier));
  chain->add_filters()->set_cells_per_column_limit_filter(1);
  return filter;
}

std::string ExactRegex(std::string_view bytes) {
  std::string out = "^";
  for (char c : bytes) {
    const unsigned char byte = static_cast<unsigned char>(c);
    if ((byte >= '0' && byte <= '9') || (byte >= 'a' && byte <= 'z') || (byte >= 'A' && byte <= 'Z') || byte == '_') {
      out.push_back(c);
    } else {
      out += fmt::format("\\x{:02x}", byte);
    }
  }
  return out + "$";
}

void AddSetCell(google::protobuf::RepeatedPtrField<v2::Mutation>* mutations, std::string_view family,
                std::string_view qualifier, std::string_view value, int64_t timestamp_micros) {
  auto* set = mutations->Add()->mutable_set_cell();
  set->set_family_name(std::string(family));
  set->set_column_qualifier(std::string(qualifier));
  set->set_timestamp_micros(timestamp_micros);
  set->set_value(std::string(value));
}

std::string EncodeInt64(int64_t value) {
  std::string out(8, '\0');
  auto bits = static_cast<uint64_t>(value);
  for (int byte_idx = 7; byte_idx >= 0; --byte_idx) {
    out[static_cast<size_t>(byte_idx)] = static_cast<char>(bits & 0xFF);
    bits >>= 8;
  }
  return out;
}

Result<int64_t> DecodeInt64(std::string_view bytes) {
  if (bytes.size() != 8) return Corruption("bigtable: an 8-byte integer cell holds {} bytes", bytes.size());
  uint64_t bits = 0;
  for (char c : bytes) bits = (bits << 8) | static_cast<unsigned char>(c);
  return static_cast<int64_t>(bits);
}

}  // namespace aquifer::drivers::bigtable
