#include "aquifer/engine/write_pipeline.h"

#include <charconv>

#include "aquifer/keys/tuple.h"
#include "aquifer/schema/codec.h"

namespace aquifer::engine {
namespace {

constexpr std::string_view kTimestampField = "@timestamp";

bool IsSpace(char c) { return c == ' ' || c == '\t' || c == '\n' || c == '\r'; }

void SkipSpace(std::string_view text, size_t* pos) {
  while (*pos < text.size() && IsSpace(text[*pos])) ++*pos;
}

// Skips a string starting at the quote at *pos; false when unterminated.
bool SkipString(std::string_view text, size_t* pos) {
  for (size_t idx = *pos + 1; idx < text.size(); ++idx) {
    if (text[idx] == '\\') {
      ++idx;
    } else if (text[idx] == '"') {
      *pos = idx + 1;
      return true;
    }
  }
  return false;
}

// Skips one JSON value starting at *pos (no leading space). Checks only the
// nesting of brackets and strings; the record parser checks the rest.
bool SkipValue(std::string_view text, size_t* pos) {
  if (*pos >= text.size()) return false;
  char first = text[*pos];
  if (first == '"') return SkipString(text, pos);
  if (first == '{' || first == '[') {
    std::string closers;
    for (size_t idx = *pos; idx < text.size();) {
      char c = text[idx];
      if (c == '"') {
        if (!SkipString(text, &idx)) return false;
        continue;
      }
      if (c == '{') closers.push_back('}');
      if (c == '[') closers.push_back(']');
      if (c == '}' || c == ']') {
        if (closers.empty() || closers.back() != c) return false;
        closers.pop_back();
        if (closers.empty()) {
          *pos = idx + 1;
          return true;
        }
      }
      ++idx;
    }
    return false;
  }
  size_t idx = *pos;
  while (idx < text.size() && !IsSpace(text[idx]) && text[idx] != ',' && text[idx] != ']' &&
         text[idx] != '}' && text[idx] != '{' && text[idx] != '[' && text[idx] != '"') {
    ++idx;
  }
  if (idx == *pos) return false;
  *pos = idx;
  return true;
}

}  // namespace

Status SplitRecords(std::string_view body, std::vector<std::string_view>* records) {
  size_t pos = 0;
  SkipSpace(body, &pos);
  if (pos < body.size() && body[pos] == '[') {
    ++pos;
    SkipSpace(body, &pos);
    if (pos < body.size() && body[pos] == ']') {
      ++pos;
    } else {
      while (true) {
        size_t start = pos;
        if (!SkipValue(body, &pos)) {
          return InvalidArgument("malformed JSON array: bad value at byte {}", start);
        }
        records->push_back(body.substr(start, pos - start));
        SkipSpace(body, &pos);
        if (pos < body.size() && body[pos] == ',') {
          ++pos;
          SkipSpace(body, &pos);
          continue;
        }
        if (pos < body.size() && body[pos] == ']') {
          ++pos;
          break;
        }
        return InvalidArgument("malformed JSON array: expected ',' or ']' at byte {}", pos);
      }
    }
    SkipSpace(body, &pos);
    if (pos != body.size()) {
      return InvalidArgument("unexpected text after the JSON array at byte {}", pos);
    }
    return Status::OK();
  }
  while (pos < body.size()) {
    size_t start = pos;
    if (!SkipValue(body, &pos)) {
      return InvalidArgument("malformed NDJSON: bad value at byte {} (record {})", start,
                             records->size());
    }
    records->push_back(body.substr(start, pos - start));
    SkipSpace(body, &pos);
  }
  return Status::OK();
}

TimestampField ScanTimestamp(std::string_view json, int64_t* ms) {
  // Member names are compared as written (escapes included), so a record
  // without an '@' has no "@timestamp" member: one memchr instead of a scan.
  if (json.find('@') == std::string_view::npos) return TimestampField::kAbsent;
  size_t pos = 0;
  SkipSpace(json, &pos);
  if (pos >= json.size() || json[pos] != '{') return TimestampField::kAbsent;
  ++pos;
  while (true) {
    SkipSpace(json, &pos);
    if (pos >= json.size() || json[pos] != '"') return TimestampField::kAbsent;
    size_t name_start = pos;
    if (!SkipString(json, &pos)) return TimestampField::kAbsent;
    std::string_view name = json.substr(name_start + 1, pos - name_start - 2);
    SkipSpace(json, &pos);
    if (pos >= json.size() || json[pos] != ':') return TimestampField::kAbsent;
    ++pos;
    SkipSpace(json, &pos);
    size_t value_start = pos;
    if (!SkipValue(json, &pos)) return TimestampField::kAbsent;
    if (name == kTimestampField) {
      std::string_view value = json.substr(value_start, pos - value_start);
      if (value == "null") return TimestampField::kAbsent;
      int64_t parsed = 0;
      auto [end, error] = std::from_chars(value.data(), value.data() + value.size(), parsed);
      if (error != std::errc() || end != value.data() + value.size() || parsed < kMinTimestampMs ||
          parsed > kMaxTimestampMs) {
        return TimestampField::kInvalid;
      }
      *ms = parsed;
      return TimestampField::kValid;
    }
    SkipSpace(json, &pos);
    if (pos < json.size() && json[pos] == ',') {
      ++pos;
      continue;
    }
    return TimestampField::kAbsent;
  }
}

Status PrepareRecords(const schema::Schema& schema, const driver::Limits& limits,
                      const std::vector<std::string_view>& texts, int64_t now_ms,
                      PreparedBatch* batch, std::vector<RecordError>* details) {
  const std::vector<std::string_view> ignored = {kTimestampField};
  std::vector<schema::FieldError> field_errors;
  std::optional<Status> too_large;
  bool invalid = false;
  batch->records.clear();
  batch->records.reserve(texts.size());
  for (size_t record_idx = 0; record_idx < texts.size(); ++record_idx) {
    const auto record_number = static_cast<int64_t>(record_idx);
    field_errors.clear();
    auto value = schema::ParseJsonRecord(schema, texts[record_idx], &field_errors, ignored);
    int64_t timestamp = now_ms;
    TimestampField timestamp_field = ScanTimestamp(texts[record_idx], &timestamp);
    if (timestamp_field == TimestampField::kInvalid) {
      invalid = true;
      details->push_back({record_number, std::string(kTimestampField),
                          fmt::format("expected an integer (ms since the epoch) between {} and {}",
                                      kMinTimestampMs, kMaxTimestampMs)});
    }
    if (!value.ok()) {
      invalid = true;
      if (field_errors.empty()) {
        details->push_back({record_number, "", value.status().message()});
      }
      for (auto& error : field_errors) {
        details->push_back({record_number, std::move(error.field), std::move(error.message)});
      }
      continue;
    }
    if (invalid) continue;  // only errors matter from here on
    driver::Record record;
    record.timestamp_ms = timestamp;
    auto key = keys::EncodeKey(schema, *value);
    Status encoded = key.ok() ? schema::EncodeAvro(schema, *value, &record.avro) : key.status();
    if (!encoded.ok()) {
      invalid = true;
      details->push_back({record_number, "", encoded.message()});
      continue;
    }
    record.key = std::move(*key);
    if (!too_large && record.key.size() > limits.max_key_size) {
      too_large = TooLarge("record {}: its key takes {} bytes, over the limit of {} bytes",
                           record_idx, record.key.size(), limits.max_key_size);
    }
    if (!too_large && record.avro.size() > limits.max_record_size) {
      too_large = TooLarge("record {}: it takes {} bytes encoded, over the limit of {} bytes",
                           record_idx, record.avro.size(), limits.max_record_size);
    }
    batch->avro_bytes += static_cast<int64_t>(record.avro.size());
    batch->records.push_back(std::move(record));
  }
  if (invalid) {
    batch->records.clear();
    size_t bad_records = 0;
    int64_t last = -1;
    for (const auto& error : *details) {
      if (error.record != last) ++bad_records;
      last = error.record;
    }
    const RecordError& first = details->front();
    return InvalidArgument("{} of {} records are invalid; nothing was written (first: record {}{}{}: {})",
                           bad_records, texts.size(), first.record, first.field.empty() ? "" : ", ",
                           first.field, first.message);
  }
  if (too_large) {
    batch->records.clear();
    return *too_large;
  }
  return Status::OK();
}

Result<std::vector<WriteMessage>> SplitIntoMessages(const std::string& write_id,
                                                    const Uuid& instance_id,
                                                    std::vector<driver::Record> records,
                                                    size_t max_message_size) {
  std::vector<WriteMessage> messages;
  auto start_message = [&] {
    WriteMessage& message = messages.emplace_back();
    message.write_id = write_id;
    message.instance_id = instance_id;
  };
  start_message();
  size_t size = kWriteMessageOverhead;
  for (size_t record_idx = 0; record_idx < records.size(); ++record_idx) {
    size_t record_size = EncodedRecordSize(records[record_idx]);
    if (kWriteMessageOverhead + record_size > max_message_size) {
      return TooLarge("record {}: it takes {} bytes, more than a queue message holds ({} bytes)",
                      record_idx, record_size, max_message_size - kWriteMessageOverhead);
    }
    if (size + record_size > max_message_size) {
      start_message();
      size = kWriteMessageOverhead;
    }
    size += record_size;
    messages.back().records.push_back(std::move(records[record_idx]));
  }
  for (size_t part = 0; part < messages.size(); ++part) {
    messages[part].part = static_cast<uint32_t>(part);
    messages[part].parts = static_cast<uint32_t>(messages.size());
  }
  return messages;
}

class WriteWaiters::Waiter {
 public:
  Waiter(uint32_t parts, uint8_t stores) : parts_(parts), wanted_(stores) {
    for (auto& done : done_) done.assign(parts, false);
  }

  // Requires the registry's mutex.
  void Mark(const WriteReport& report) {
    if (report.parts != parts_ || report.part >= parts_) return;
    for (int store_idx = 0; store_idx < 3; ++store_idx) {
      if ((report.stores & (1 << store_idx)) == 0 || done_[store_idx][report.part]) continue;
      done_[store_idx][report.part] = true;
      if (++counts_[store_idx] == parts_) completed_ |= static_cast<uint8_t>(1 << store_idx);
    }
  }
  bool satisfied() const { return (completed_ & wanted_) == wanted_; }
  uint8_t wanted() const { return wanted_; }
  uint8_t completed() const { return completed_; }
  std::condition_variable cv;  // waited on with the registry's mutex

 private:
  uint32_t parts_;
  uint8_t wanted_;
  uint8_t completed_ = 0;
  std::vector<bool> done_[3];
  uint32_t counts_[3] = {0, 0, 0};
};

std::shared_ptr<WriteWaiters::Waiter> WriteWaiters::Register(const std::string& write_id,
                                                             uint32_t parts, uint8_t stores) {
  auto waiter = std::make_shared<Waiter>(parts, stores);
  std::lock_guard lock(mu_);
  auto& slot = waiters_[write_id];
  if (slot != nullptr && (slot->wanted() & kStoreWarehouse) != 0) --warehouse_waiters_;
  slot = waiter;
  if ((stores & kStoreWarehouse) != 0) {
    ++warehouse_waiters_;
    warehouse_cv_.notify_all();
  }
  return waiter;
}

void WriteWaiters::Unregister(const std::string& write_id) {
  std::lock_guard lock(mu_);
  auto it = waiters_.find(write_id);
  if (it == waiters_.end()) return;
  if ((it->second->wanted() & kStoreWarehouse) != 0) --warehouse_waiters_;
  waiters_.erase(it);
}

bool WriteWaiters::AwaitWarehouseWaiter(std::chrono::steady_clock::time_point deadline,
                                        const std::function<bool()>& stop) {
  std::unique_lock lock(mu_);
  warehouse_cv_.wait_until(lock, deadline, [&] { return warehouse_waiters_ > 0 || stop(); });
  return warehouse_waiters_ > 0;
}

void WriteWaiters::WakeWarehouseWait() {
  std::lock_guard lock(mu_);  // a waiter between its check of stop() and its wait sees the wake
  warehouse_cv_.notify_all();
}

int64_t WriteWaiters::warehouse_waiters() const {
  std::lock_guard lock(mu_);
  return warehouse_waiters_;
}

void WriteWaiters::OnReport(const WriteReport& report) {
  std::lock_guard lock(mu_);
  auto it = waiters_.find(report.write_id);
  if (it == waiters_.end()) return;
  it->second->Mark(report);
  if (it->second->satisfied()) it->second->cv.notify_all();
}

bool WriteWaiters::Wait(Waiter* waiter, std::chrono::milliseconds timeout) {
  std::unique_lock lock(mu_);
  return waiter->cv.wait_for(lock, timeout, [&] { return waiter->satisfied(); });
}

uint8_t WriteWaiters::Completed(Waiter* waiter) {
  std::lock_guard lock(mu_);
  return waiter->completed();
}

size_t WriteWaiters::size() const {
  std::lock_guard lock(mu_);
  return waiters_.size();
}

}  // namespace aquifer::engine
