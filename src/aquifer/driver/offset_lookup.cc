#include "aquifer/driver/offset_lookup.h"

#include <algorithm>

#include "aquifer/driver/record_limits.h"
#include "aquifer/keys/filter.h"

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

}  // namespace aquifer::driver
