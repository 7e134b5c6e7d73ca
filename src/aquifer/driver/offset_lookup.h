#pragma once

// The parts of a LookupService that are the same for every driver numbering an
// instance's log by offset and using the offset_payload.h layout (Postgres,
// Cassandra, Bigtable): the checks and cursors of Query and Peek from the
// committed end of the log, the dispatch of ReadCursor to the index or the log,
// and the [low, high) offsets a log read still has to cover and the payload
// that continues it. Reading storage stays with the driver (the callbacks).

#include <cstdint>
#include <functional>
#include <string>
#include <string_view>

#include "aquifer/base/status.h"
#include "aquifer/driver/lookup_service.h"
#include "aquifer/driver/offset_payload.h"
#include "aquifer/driver/types.h"
#include "aquifer/keys/filter.h"

namespace aquifer::driver {

// The committed end of an instance's log: the offset the next record gets.
using CommittedEnd = std::function<Result<uint64_t>()>;

// Query: InvalidArgument without a schema, for an index query with use_index
// off, for a log query with use_log off; else the filter is planned (index),
// `committed` is read once and the cursors are: index replay of the planned
// range (none if empty) and change from the end; log replay of [0, end) (none
// if the log is empty) and change from the end, both from request's timestamp.
Result<QueryCursors> QueryOffsetCursors(const InstanceInfo& instance, const QueryRequest& request,
                                        const CommittedEnd& committed);
// Peek: InvalidArgument with use_log off; else rewind from the end (none if the
// log is empty) and change from the end.
Result<PeekCursors> PeekOffsetCursors(const InstanceInfo& instance, const CommittedEnd& committed);

using PayloadRead = std::function<Result<ReadResult>(const OffsetPayload& payload)>;
// ReadCursor: CheckReadOptions; an empty payload reads nothing; InvalidArgument
// without a schema, for a malformed payload, for an index payload with
// use_index off and a log payload with use_log off; else read_index or read_log.
Result<ReadResult> ReadOffsetCursor(const InstanceInfo& instance, std::string_view payload, const ReadOptions& options,
                                    const PayloadRead& read_index, const PayloadRead& read_log);

// The offsets [low, high) a log payload (log replay, rewind, change) still has
// to read, given the committed end: replay [next, min(end, committed)), rewind
// [0, min(before, committed)), change [next, committed).
struct LogSpan {
  int64_t low = 0, high = 0;
};
LogSpan LogSpanToRead(const OffsetPayload& payload, int64_t committed);
// The payload continuing `payload` once [low, high) is what is left unread:
// replay and rewind continue while low < high (else empty: exhausted); change
// always continues, from max(low, payload.next).
std::string NextLogPayload(const OffsetPayload& payload, int64_t low, int64_t high);

// A log page: records before max(payload's from, options' from, the log's
// retention horizon at now_ms) are skipped (so a cursor into the expired head
// continues from the oldest record kept), and at most LogExamine rows are
// examined: min(limit, budget) without a filter (nearly every row is
// returned), else the budget.
int64_t LogFromTimestamp(const InstanceInfo& instance, const OffsetPayload& payload, const ReadOptions& options,
                         int64_t now_ms);
int64_t LogExamine(const keys::Filter& filter, const ReadOptions& options);

// An index page: rows examined at most (without a residual filter every
// examined row is returned, so min(limit, budget); else the budget). A driver
// fetches up to examine + 1 rows in key order from payload.start: whether the
// extra row exists says if a next payload is needed.
int64_t IndexExamine(const keys::QueryPlan& plan, const ReadOptions& options);
struct IndexRowView {
  std::string_view key, avro;
};
// Walks the `row_count` rows fetched (row(i): key and Avro; ts(i), offset(i):
// the cells, read only when needed) until the limit or the budget: rows older
// than `horizon`, outside the planned range or not matching the residual
// filter are examined but not returned ("decoding an index row of <id>" on a
// bad record). The next payload resumes just after the last examined key.
Result<ReadResult> ReadIndexPage(const InstanceInfo& instance, const keys::QueryPlan& plan, const OffsetPayload& payload,
                                 const ReadOptions& options, int64_t horizon, size_t row_count,
                                 const std::function<IndexRowView(size_t)>& row,
                                 const std::function<Result<int64_t>(size_t)>& ts,
                                 const std::function<Result<int64_t>(size_t)>& offset);

}  // namespace aquifer::driver
