#include "aquifer/driver/offset_lookup.h"

#include <algorithm>

#include <fmt/format.h>

#include "aquifer/driver/record_limits.h"
#include "aquifer/keys/filter.h"
#include "aquifer/schema/codec.h"

namespace aquifer::driver {

Result<QueryCursors> QueryOffsetCursors(const InstanceInfo& instance, const QueryRequest& request,
                                        const CommittedEnd& committed) {
  if (instance.schema == nullptr) return InvalidArgument("querying {}: no schema", instance.instance_id.ToString());
  QueryCursors cursors;
  if (request.kind == QueryKind::kIndex) {
    if (!instance.use_index) {
      return InvalidArgument("querying {}: the table has no index (use_index is off)", instance.instance_id.ToString());
    }
    AQ_ASSIGN_OR_RETURN(keys::QueryPlan plan, keys::PlanFilter(*instance.schema, request.filter));
    AQ_ASSIGN_OR_RETURN(uint64_t stable, committed());
    if (!plan.range.IsEmpty()) cursors.replay = IndexPayload(plan.range.start, plan.range.end);
    cursors.change = ChangePayload(stable, 0);
  } else {
    if (!instance.use_log) {
      return InvalidArgument("querying {}: the table has no log (use_log is off)", instance.instance_id.ToString());
    }
    AQ_ASSIGN_OR_RETURN(uint64_t stable, committed());
    if (stable > 0) cursors.replay = LogPayload(0, stable, request.from_timestamp_ms);
    cursors.change = ChangePayload(stable, request.from_timestamp_ms);
  }
  return cursors;
}

Result<PeekCursors> PeekOffsetCursors(const InstanceInfo& instance, const CommittedEnd& committed) {
  if (!instance.use_log) {
    return InvalidArgument("peeking {}: the table has no log (use_log is off)", instance.instance_id.ToString());
  }
  AQ_ASSIGN_OR_RETURN(uint64_t stable, committed());
  PeekCursors cursors;
  if (stable > 0) cursors.rewind = RewindPayload(stable);
  cursors.change = ChangePayload(stable, 0);
  return cursors;
}

Result<ReadResult> ReadOffsetCursor(const InstanceInfo& instance, std::string_view payload, const ReadOptions& options,
                                    const PayloadRead& read_index, const PayloadRead& read_log) {
  AQ_RETURN_IF_ERROR(CheckReadOptions(instance.instance_id, options));
  if (payload.empty()) return ReadResult{};
  if (instance.schema == nullptr) return InvalidArgument("reading {}: no schema", instance.instance_id.ToString());
  AQ_ASSIGN_OR_RETURN(OffsetPayload decoded, DecodePayload(payload));
  if (decoded.kind == PayloadKind::kIndexReplay) {
    if (!instance.use_index) {
      return InvalidArgument("reading {}: the table has no index (use_index is off)", instance.instance_id.ToString());
    }
    return read_index(decoded);
  }
  if (!instance.use_log) {
    return InvalidArgument("reading {}: the table has no log (use_log is off)", instance.instance_id.ToString());
  }
  return read_log(decoded);
}

LogSpan LogSpanToRead(const OffsetPayload& payload, int64_t committed) {
  LogSpan span;
  switch (payload.kind) {
    case PayloadKind::kLogReplay:
      span.low = static_cast<int64_t>(payload.next);
      span.high = std::min<int64_t>(static_cast<int64_t>(payload.end_offset), committed);
      break;
    case PayloadKind::kRewind:
      span.high = std::min<int64_t>(static_cast<int64_t>(payload.before), committed);
      break;
    default:
      span.low = static_cast<int64_t>(payload.next);
      span.high = committed;
      break;
  }
  return span;
}

std::string NextLogPayload(const OffsetPayload& payload, int64_t low, int64_t high) {
  switch (payload.kind) {
    case PayloadKind::kLogReplay:
      if (low >= high) return std::string();
      return LogPayload(static_cast<uint64_t>(low), payload.end_offset, payload.from_timestamp_ms);
    case PayloadKind::kRewind:
      if (low >= high) return std::string();
      return RewindPayload(static_cast<uint64_t>(high));
    default:
      return ChangePayload(static_cast<uint64_t>(std::max<int64_t>(low, static_cast<int64_t>(payload.next))),
                           payload.from_timestamp_ms);
  }
}

int64_t LogFromTimestamp(const InstanceInfo& instance, const OffsetPayload& payload, const ReadOptions& options,
                         int64_t now_ms) {
  return std::max({payload.from_timestamp_ms, options.from_timestamp_ms,
                   RetentionHorizon(instance.log_retention_ms, now_ms)});
}

int64_t LogExamine(const keys::Filter& filter, const ReadOptions& options) {
  return filter.empty() ? std::min<int64_t>(options.limit, options.scan_budget) : options.scan_budget;
}

int64_t IndexExamine(const keys::QueryPlan& plan, const ReadOptions& options) {
  return plan.has_residual() ? options.scan_budget : std::min<int64_t>(options.limit, options.scan_budget);
}

Result<ReadResult> ReadIndexPage(const InstanceInfo& instance, const keys::QueryPlan& plan, const OffsetPayload& payload,
                                 const ReadOptions& options, int64_t horizon, size_t row_count,
                                 const std::function<IndexRowView(size_t)>& row,
                                 const std::function<Result<int64_t>(size_t)>& ts,
                                 const std::function<Result<int64_t>(size_t)>& offset) {
  const schema::Schema& schema = *instance.schema;
  const int64_t examine = IndexExamine(plan, options);
  ReadResult result;
  result.residual = plan.has_residual();
  std::string last_key;
  size_t row_idx = 0;
  for (; row_idx < row_count; ++row_idx) {
    if (static_cast<int64_t>(result.records.size()) >= options.limit || result.scanned >= examine) break;
    const auto [key, avro] = row(row_idx);
    ++result.scanned;
    result.scanned_bytes += static_cast<int64_t>(avro.size());
    last_key.assign(key);
    AQ_ASSIGN_OR_RETURN(int64_t row_ts, ts(row_idx));
    if (row_ts < horizon) continue;
    if (!plan.range.Contains(key)) continue;
    if (plan.has_residual()) {
      auto value = schema::DecodeAvro(schema, avro);
      if (!value.ok()) {
        return value.status().WithContext(fmt::format("decoding an index row of {}", instance.instance_id.ToString()));
      }
      if (!keys::Matches(schema, plan.residual, *value)) continue;
    }
    AQ_ASSIGN_OR_RETURN(int64_t row_offset, offset(row_idx));
    result.records.push_back(Record{std::string(key), std::string(avro), row_ts, row_offset});
  }
  // Resume strictly after the last examined key: its immediate successor.
  if (row_idx < row_count) result.next = IndexPayload(result.scanned > 0 ? last_key + '\0' : payload.start, payload.end);
  return result;
}

}  // namespace aquifer::driver
