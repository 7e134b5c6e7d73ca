#include "lookup_conformance.h"

#include <algorithm>
#include <atomic>
#include <cstdlib>
#include <filesystem>
#include <functional>
#include <map>
#include <random>
#include <set>
#include <thread>
#include <tuple>
#include <vector>

#include <fmt/format.h>
#include <gmock/gmock.h>

#include "aquifer/base/uuid.h"
#include "aquifer/keys/filter.h"
#include "aquifer/keys/tuple.h"
#include "aquifer/schema/codec.h"
#include "aquifer/schema/schema.h"

namespace aquifer::conformance {

std::string LookupDriverFactoryName(const ::testing::TestParamInfo<LookupDriverFactory>& info) {
  return info.param.name;
}

ScratchDir::ScratchDir() {
  std::string base = std::filesystem::temp_directory_path() / "aquifer-conformance-XXXXXX";
  std::vector<char> buf(base.begin(), base.end());
  buf.push_back('\0');
  if (mkdtemp(buf.data()) == nullptr) {
    ADD_FAILURE() << "mkdtemp failed for " << base;
    return;
  }
  path_ = buf.data();
}

ScratchDir::~ScratchDir() {
  if (path_.empty()) return;
  std::error_code ec;
  std::filesystem::remove_all(path_, ec);
}

void LookupConformance::SetUp() {
  auto made = GetParam().make(scratch_.path(), &clock_);
  ASSERT_TRUE(made.ok()) << "making lookup driver " << GetParam().name << ": " << made.status().ToString();
  service_ = *made;
  ASSERT_NE(service_, nullptr);
}

void LookupConformance::TearDown() { service_.reset(); }

void LookupConformance::Reopen() {
  service_.reset();
  auto made = GetParam().make(scratch_.path(), &clock_);
  ASSERT_TRUE(made.ok()) << "reopening lookup driver " << GetParam().name << ": " << made.status().ToString();
  service_ = *made;
}

GTEST_ALLOW_UNINSTANTIATED_PARAMETERIZED_TEST(LookupConformance);

namespace {

using driver::InstanceInfo;
using driver::QueryKind;
using driver::Record;
using ::testing::HasSubstr;

// Key (region, n, name): a string, a long that may be negative, a string.
constexpr const char* kSchemaJson = R"json({
  "type": "record", "name": "Event", "namespace": "conformance",
  "fields": [
    {"name": "region", "type": "string"},
    {"name": "n", "type": "long"},
    {"name": "name", "type": "string"},
    {"name": "score", "type": "long"},
    {"name": "note", "type": ["null", "string"], "default": null}
  ]
})json";

schema::SchemaPtr TestSchema() {
  static const schema::SchemaPtr schema = [] {
    auto parsed = schema::Schema::Parse(kSchemaJson, {"region", "n", "name"});
    if (!parsed.ok()) {
      ADD_FAILURE() << parsed.status().ToString();
      return schema::SchemaPtr();
    }
    return *parsed;
  }();
  return schema;
}

struct Row {
  std::string region;
  int64_t n = 0;
  std::string name;
  int64_t score = 0;
  std::string note;  // empty: null
  int64_t ts = 0;
};

std::string JsonString(std::string_view text) {
  std::string out = "\"";
  for (char c : text) {
    if (c == '"' || c == '\\') {
      out.push_back('\\');
      out.push_back(c);
    } else if (static_cast<unsigned char>(c) < 0x20) {
      out += fmt::format("\\u{:04x}", static_cast<unsigned char>(c));
    } else {
      out.push_back(c);
    }
  }
  return out + "\"";
}

Record MakeRecord(const Row& row) {
  const schema::Schema& schema = *TestSchema();
  std::string note = row.note.empty() ? "null" : JsonString(row.note);
  std::string json = fmt::format(R"({{"region":{},"n":{},"name":{},"score":{},"note":{}}})", JsonString(row.region),
                                 row.n, JsonString(row.name), row.score, note);
  auto value = schema::ParseJsonRecord(schema, json);
  EXPECT_TRUE(value.ok()) << json << ": " << value.status().ToString();
  if (!value.ok()) return {};
  Record record;
  record.timestamp_ms = row.ts;
  Status encoded = schema::EncodeAvro(schema, *value, &record.avro);
  EXPECT_TRUE(encoded.ok()) << encoded.ToString();
  auto key = keys::EncodeKey(schema, *value);
  EXPECT_TRUE(key.ok()) << key.status().ToString();
  if (key.ok()) record.key = *key;
  return record;
}

std::vector<Record> MakeRecords(const std::vector<Row>& rows) {
  std::vector<Record> records;
  for (const Row& row : rows) records.push_back(MakeRecord(row));
  return records;
}

InstanceInfo NewInstance(bool use_log = true, bool use_index = true) {
  InstanceInfo instance;
  instance.instance_id = Uuid::Random();
  instance.project = "conformance";
  instance.table = "events";
  instance.schema = TestSchema();
  instance.use_log = use_log;
  instance.use_index = use_index;
  return instance;
}

keys::Filter ParseFilterOrFail(const std::string& json) {
  auto filter = keys::ParseFilter(*TestSchema(), json);
  EXPECT_TRUE(filter.ok()) << json << ": " << filter.status().ToString();
  return filter.ok() ? *filter : keys::Filter{};
}

// What a record is, apart from where the log put it.
using Content = std::tuple<std::string, std::string, int64_t>;
Content ContentOf(const Record& record) { return {record.key, record.avro, record.timestamp_ms}; }
std::vector<Content> ContentsOf(const std::vector<Record>& records) {
  std::vector<Content> out;
  for (const Record& record : records) out.push_back(ContentOf(record));
  return out;
}

struct ReadAllResult {
  std::vector<Record> records;
  int pages = 0;
  bool residual_on_every_page = true;
  bool residual_on_any_page = false;
};

// Reads a replay payload page by page until `next` is empty, checking the
// per-page contract (at most `limit` records, at most `budget` scanned).
ReadAllResult ReadAll(driver::LookupService& service, const InstanceInfo& instance, std::string payload,
                      const keys::Filter& filter, int32_t limit, int64_t budget = 10'000) {
  ReadAllResult out;
  driver::ReadOptions options;
  options.limit = limit;
  options.scan_budget = budget;
  while (!payload.empty()) {
    if (++out.pages > 100'000) {
      ADD_FAILURE() << "replay did not end after 100000 pages";
      break;
    }
    auto page = service.ReadCursor(instance, payload, filter, options);
    if (!page.ok()) {
      ADD_FAILURE() << "ReadCursor: " << page.status().ToString();
      break;
    }
    EXPECT_LE(page->records.size(), static_cast<size_t>(limit));
    EXPECT_LE(page->scanned, budget);
    out.residual_on_every_page &= page->residual;
    out.residual_on_any_page |= page->residual;
    for (Record& record : page->records) out.records.push_back(std::move(record));
    payload = page->next;
  }
  return out;
}

std::vector<Record> ReadIndex(driver::LookupService& service, const InstanceInfo& instance,
                              const std::string& filter_json = "{}", int32_t limit = 1000) {
  keys::Filter filter = ParseFilterOrFail(filter_json);
  driver::QueryRequest request;
  request.kind = QueryKind::kIndex;
  request.filter = filter;
  auto cursors = service.Query(instance, request);
  EXPECT_TRUE(cursors.ok()) << cursors.status().ToString();
  if (!cursors.ok()) return {};
  EXPECT_FALSE(cursors->change.empty());
  return ReadAll(service, instance, cursors->replay, filter, limit).records;
}

std::vector<Record> ReadLog(driver::LookupService& service, const InstanceInfo& instance,
                            const std::string& filter_json = "{}", int32_t limit = 1000) {
  keys::Filter filter = ParseFilterOrFail(filter_json);
  driver::QueryRequest request;
  request.kind = QueryKind::kLog;
  request.filter = filter;
  auto cursors = service.Query(instance, request);
  EXPECT_TRUE(cursors.ok()) << cursors.status().ToString();
  if (!cursors.ok()) return {};
  EXPECT_FALSE(cursors->change.empty());
  return ReadAll(service, instance, cursors->replay, filter, limit).records;
}

// The index by the contract: per key, the highest timestamp, ties to the later write.
std::map<std::string, Content> ModelIndex(const std::vector<Record>& writes_in_order) {
  std::map<std::string, Content> index;
  for (const Record& record : writes_in_order) {
    auto it = index.find(record.key);
    if (it == index.end() || record.timestamp_ms >= std::get<2>(it->second)) index[record.key] = ContentOf(record);
  }
  return index;
}
std::vector<Content> Values(const std::map<std::string, Content>& index) {
  std::vector<Content> out;
  for (const auto& [key, content] : index) out.push_back(content);
  return out;
}

void Write(driver::LookupService& service, const InstanceInfo& instance, const std::vector<Record>& batch) {
  Status status = service.WriteRecords(instance, batch, {});
  ASSERT_TRUE(status.ok()) << status.ToString();
}

// ---- index -------------------------------------------------------------------

TEST_P(LookupConformance, IndexReturnsLatestRecordPerKeyByTimestamp) {
  InstanceInfo instance = NewInstance();
  ASSERT_TRUE(service_->RegisterInstance(instance).ok());
  // Within a batch the older timestamp comes second; across batches the
  // second batch carries one newer and one older record.
  std::vector<Record> first = MakeRecords({{"eu", 1, "a", 10, "new", 200}, {"eu", 1, "a", 11, "old", 100},
                                           {"eu", 2, "a", 20, "", 100}, {"us", 1, "b", 30, "", 100}});
  std::vector<Record> second = MakeRecords({{"eu", 2, "a", 21, "newer", 150}, {"us", 1, "b", 31, "older", 50}});
  Write(*service_, instance, first);
  Write(*service_, instance, second);

  std::vector<Record> index = ReadIndex(*service_, instance);
  ASSERT_EQ(index.size(), 3u);
  EXPECT_EQ(ContentOf(index[0]), ContentOf(first[0]));   // eu/1/a: ts 200 beats 100 written after it
  EXPECT_EQ(ContentOf(index[1]), ContentOf(second[0]));  // eu/2/a: ts 150 beats 100
  EXPECT_EQ(ContentOf(index[2]), ContentOf(first[3]));   // us/1/b: ts 100 beats a later ts 50
}

TEST_P(LookupConformance, IndexMatchesTheModelUnderRandomOutOfOrderTimestampsAndTies) {
  InstanceInfo instance = NewInstance();
  std::mt19937_64 rng(42);
  std::vector<Record> all;
  for (int batch_idx = 0; batch_idx < 6; ++batch_idx) {
    std::vector<Row> rows;
    for (int row_idx = 0; row_idx < 40; ++row_idx) {
      Row row{"r" + std::to_string(rng() % 3), static_cast<int64_t>(rng() % 5) - 2, "k",
              static_cast<int64_t>(rng() % 1000), "b" + std::to_string(batch_idx), static_cast<int64_t>(rng() % 8)};
      rows.push_back(row);
    }
    std::vector<Record> batch = MakeRecords(rows);
    Write(*service_, instance, batch);
    all.insert(all.end(), batch.begin(), batch.end());
  }
  EXPECT_EQ(ContentsOf(ReadIndex(*service_, instance)), Values(ModelIndex(all)));
}

TEST_P(LookupConformance, RedeliveredBatchDoesNotChangeTheIndex) {
  InstanceInfo instance = NewInstance();
  std::vector<Record> a = MakeRecords({{"eu", 1, "a", 1, "", 10}, {"eu", 2, "a", 2, "", 30}, {"us", 3, "c", 3, "", 5}});
  std::vector<Record> b = MakeRecords({{"eu", 1, "a", 4, "", 20}, {"eu", 2, "a", 5, "", 25}});
  Write(*service_, instance, a);
  Write(*service_, instance, b);
  std::vector<Content> before = ContentsOf(ReadIndex(*service_, instance));
  ASSERT_EQ(before.size(), 3u);
  Write(*service_, instance, a);  // at-least-once: the same batch again
  Write(*service_, instance, b);
  Write(*service_, instance, a);
  EXPECT_EQ(ContentsOf(ReadIndex(*service_, instance)), before);
  // The log keeps every delivery.
  EXPECT_EQ(ReadLog(*service_, instance).size(), 3 * a.size() + 2 * b.size());
}

// ---- exactly once (record groups) ------------------------------------------------------

std::vector<driver::RecordGroup> Groups(std::initializer_list<std::pair<const char*, size_t>> groups) {
  std::vector<driver::RecordGroup> out;
  for (const auto& [id, count] : groups) out.push_back({id, count});
  return out;
}

TEST_P(LookupConformance, AGroupWrittenTwiceIsLoggedOnce) {
  InstanceInfo instance = NewInstance();
  ASSERT_TRUE(service_->RegisterInstance(instance).ok());
  std::vector<Record> batch = MakeRecords({{"eu", 1, "a", 1, "", 10}, {"eu", 2, "a", 2, "", 20}});
  auto groups = Groups({{"message-1", 2}});
  ASSERT_TRUE(service_->WriteRecords(instance, batch, groups).ok());
  Status again = service_->WriteRecords(instance, batch, groups);  // redelivered
  ASSERT_TRUE(again.ok()) << again.ToString();
  Reopen();  // the applied ids are durable with the data
  ASSERT_TRUE(service_->WriteRecords(instance, batch, groups).ok());
  std::vector<Record> log = ReadLog(*service_, instance);
  EXPECT_EQ(ContentsOf(log), ContentsOf(batch));
  ASSERT_EQ(log.size(), 2u);
  EXPECT_EQ(log[1].offset, 1);  // skipped writes take no offsets
  EXPECT_EQ(ReadIndex(*service_, instance).size(), 2u);
}

TEST_P(LookupConformance, RegroupedRedeliveryWritesOnlyTheGroupsNotAppliedYet) {
  InstanceInfo instance = NewInstance();
  std::vector<Record> a = MakeRecords({{"eu", 1, "a", 1, "", 10}});
  std::vector<Record> b = MakeRecords({{"eu", 2, "b", 2, "", 20}, {"eu", 3, "b", 3, "", 20}});
  std::vector<Record> c = MakeRecords({{"us", 4, "c", 4, "", 30}});
  std::vector<Record> ab = a;
  ab.insert(ab.end(), b.begin(), b.end());
  ASSERT_TRUE(service_->WriteRecords(instance, ab, Groups({{"A", 1}, {"B", 2}})).ok());
  // B again, now with C after it; then B and C alone, and A and C in one call.
  std::vector<Record> bc = b;
  bc.insert(bc.end(), c.begin(), c.end());
  ASSERT_TRUE(service_->WriteRecords(instance, bc, Groups({{"B", 2}, {"C", 1}})).ok());
  ASSERT_TRUE(service_->WriteRecords(instance, b, Groups({{"B", 2}})).ok());
  std::vector<Record> ac = a;
  ac.insert(ac.end(), c.begin(), c.end());
  ASSERT_TRUE(service_->WriteRecords(instance, ac, Groups({{"A", 1}, {"C", 1}})).ok());
  std::vector<Record> expected = ab;
  expected.insert(expected.end(), c.begin(), c.end());
  EXPECT_EQ(ContentsOf(ReadLog(*service_, instance)), ContentsOf(expected));
}

TEST_P(LookupConformance, AGroupRepeatedInOneCallIsWrittenOnce) {
  InstanceInfo instance = NewInstance();
  std::vector<Record> twice = MakeRecords({{"eu", 1, "a", 1, "", 10}, {"eu", 1, "a", 1, "", 10}});
  ASSERT_TRUE(service_->WriteRecords(instance, twice, Groups({{"X", 1}, {"X", 1}})).ok());
  EXPECT_EQ(ReadLog(*service_, instance).size(), 1u);
}

TEST_P(LookupConformance, WritesWithoutGroupsAreNotDeduplicated) {
  InstanceInfo instance = NewInstance();
  std::vector<Record> batch = MakeRecords({{"eu", 1, "a", 1, "", 10}});
  Write(*service_, instance, batch);
  ASSERT_TRUE(service_->WriteRecords(instance, batch, Groups({{"G", 1}})).ok());
  Write(*service_, instance, batch);
  EXPECT_EQ(ReadLog(*service_, instance).size(), 3u);
}

TEST_P(LookupConformance, BadGroupsAreRejectedAndNothingIsWritten) {
  InstanceInfo instance = NewInstance();
  std::vector<Record> batch = MakeRecords({{"eu", 1, "a", 1, "", 10}, {"eu", 2, "a", 1, "", 10}});
  EXPECT_EQ(service_->WriteRecords(instance, batch, Groups({{"G", 1}})).code(), StatusCode::kInvalidArgument);
  EXPECT_EQ(service_->WriteRecords(instance, batch, Groups({{"G", 3}})).code(), StatusCode::kInvalidArgument);
  EXPECT_EQ(service_->WriteRecords(instance, batch, Groups({{"", 2}})).code(), StatusCode::kInvalidArgument);
  std::string long_id(driver::kMaxRecordGroupIdSize + 1, 'x');
  std::vector<driver::RecordGroup> too_long{{long_id, 2}};
  EXPECT_EQ(service_->WriteRecords(instance, batch, too_long).code(), StatusCode::kInvalidArgument);
  EXPECT_TRUE(ReadLog(*service_, instance).empty());
  // None of the refused calls marked "G" as applied.
  ASSERT_TRUE(service_->WriteRecords(instance, batch, Groups({{"G", 2}})).ok());
  EXPECT_EQ(ReadLog(*service_, instance).size(), 2u);
}

TEST_P(LookupConformance, RemovingAnInstanceForgetsItsAppliedGroups) {
  InstanceInfo instance = NewInstance();
  std::vector<Record> batch = MakeRecords({{"eu", 1, "a", 1, "", 10}});
  ASSERT_TRUE(service_->WriteRecords(instance, batch, Groups({{"G", 1}})).ok());
  ASSERT_TRUE(service_->RemoveInstance(instance).ok());
  ASSERT_TRUE(service_->WriteRecords(instance, batch, Groups({{"G", 1}})).ok());
  EXPECT_EQ(ReadLog(*service_, instance).size(), 1u);
  // Ids are per instance: another instance applies "G" too.
  InstanceInfo other = NewInstance();
  ASSERT_TRUE(service_->WriteRecords(other, batch, Groups({{"G", 1}})).ok());
  EXPECT_EQ(ReadLog(*service_, other).size(), 1u);
}

TEST_P(LookupConformance, EqualTimestampsAreWonByTheLaterWrite) {
  InstanceInfo instance = NewInstance();
  std::vector<Record> batch = MakeRecords({{"eu", 1, "a", 1, "first", 7}, {"eu", 1, "a", 2, "second", 7}});
  Write(*service_, instance, batch);
  std::vector<Record> index = ReadIndex(*service_, instance);
  ASSERT_EQ(index.size(), 1u);
  EXPECT_EQ(ContentOf(index[0]), ContentOf(batch[1]));

  std::vector<Record> later = MakeRecords({{"eu", 1, "a", 3, "third", 7}});
  Write(*service_, instance, later);
  index = ReadIndex(*service_, instance);
  ASSERT_EQ(index.size(), 1u);
  EXPECT_EQ(ContentOf(index[0]), ContentOf(later[0]));
  EXPECT_EQ(index[0].offset, 2);
}

TEST_P(LookupConformance, IndexReplayPagesWithoutSkipOrDuplicate) {
  InstanceInfo instance = NewInstance();
  std::vector<Row> rows;
  for (int row_idx = 0; row_idx < 53; ++row_idx) rows.push_back({"eu", row_idx - 20, "x", row_idx, "", 1});
  Write(*service_, instance, MakeRecords(rows));
  std::vector<Content> expected = ContentsOf(ReadIndex(*service_, instance, "{}", 1000));
  ASSERT_EQ(expected.size(), 53u);
  for (int32_t page_size : {1, 7, 1000}) {
    keys::Filter filter;
    driver::QueryRequest request;
    auto cursors = service_->Query(instance, request);
    ASSERT_TRUE(cursors.ok());
    ReadAllResult all = ReadAll(*service_, instance, cursors->replay, filter, page_size);
    EXPECT_EQ(ContentsOf(all.records), expected) << "page size " << page_size;
    EXPECT_LE(all.pages, 53 / page_size + 2) << "page size " << page_size;
    EXPECT_FALSE(all.residual_on_any_page);
  }
}

// ---- log -----------------------------------------------------------------------

TEST_P(LookupConformance, LogReplayReturnsRecordsInWriteOrderWithEveryPageSize) {
  InstanceInfo instance = NewInstance();
  std::vector<Record> written;
  for (int batch_idx = 0; batch_idx < 3; ++batch_idx) {
    std::vector<Row> rows;
    // Same key repeated, timestamps going down: the log keeps all, in write order.
    for (int row_idx = 0; row_idx < 17; ++row_idx) {
      rows.push_back({"eu", row_idx % 4, "k", batch_idx * 100 + row_idx, "", 1000 - row_idx - batch_idx});
    }
    std::vector<Record> batch = MakeRecords(rows);
    Write(*service_, instance, batch);
    written.insert(written.end(), batch.begin(), batch.end());
  }
  for (int32_t page_size : {1, 7, 1000}) {
    std::vector<Record> log = ReadLog(*service_, instance, "{}", page_size);
    ASSERT_EQ(log.size(), written.size()) << "page size " << page_size;
    for (size_t record_idx = 0; record_idx < log.size(); ++record_idx) {
      EXPECT_EQ(ContentOf(log[record_idx]), ContentOf(written[record_idx])) << "page size " << page_size;
      EXPECT_EQ(log[record_idx].offset, static_cast<int64_t>(record_idx)) << "page size " << page_size;
    }
  }
}

TEST_P(LookupConformance, LogQueryFromTimestampSkipsEarlierRecords) {
  InstanceInfo instance = NewInstance();
  std::vector<Row> rows;
  for (int row_idx = 0; row_idx < 20; ++row_idx) rows.push_back({"eu", row_idx, "k", row_idx, "", (row_idx * 7) % 20});
  std::vector<Record> written = MakeRecords(rows);
  Write(*service_, instance, written);

  driver::QueryRequest request;
  request.kind = QueryKind::kLog;
  request.from_timestamp_ms = 10;
  auto cursors = service_->Query(instance, request);
  ASSERT_TRUE(cursors.ok()) << cursors.status().ToString();
  std::vector<Content> expected;
  for (const Record& record : written) {
    if (record.timestamp_ms >= 10) expected.push_back(ContentOf(record));
  }
  EXPECT_EQ(ContentsOf(ReadAll(*service_, instance, cursors->replay, {}, 3).records), expected);

  // The change cursor skips earlier timestamps too.
  std::vector<Record> later = MakeRecords({{"us", 1, "k", 1, "", 3}, {"us", 2, "k", 2, "", 12}});
  Write(*service_, instance, later);
  auto change = service_->ReadCursor(instance, cursors->change, {}, driver::ReadOptions{});
  ASSERT_TRUE(change.ok()) << change.status().ToString();
  ASSERT_EQ(change->records.size(), 1u);
  EXPECT_EQ(ContentOf(change->records[0]), ContentOf(later[1]));
}

// ---- filters -------------------------------------------------------------------

struct FilterCase {
  std::string json;
  std::function<bool(const Row&)> matches;
  bool residual;
};

std::vector<Row> FilterRows() {
  std::vector<Row> rows;
  const std::vector<std::string> regions = {"e", "eu", "eu-west", "us", "eu\x01"};
  const std::vector<std::string> names = {"", "a", "ab", "b"};
  int64_t score = 0;
  for (const std::string& region : regions) {
    for (int64_t n = -3; n <= 6; ++n) {
      for (const std::string& name : names) {
        score = (score * 37 + 11) % 100;
        rows.push_back({region, n, name, score, "", 1});
      }
    }
  }
  return rows;
}

std::vector<FilterCase> FilterCases() {
  return {
      {"{}", [](const Row&) { return true; }, false},
      {R"({"region": "eu"})", [](const Row& r) { return r.region == "eu"; }, false},
      {R"({"region": "eu", "n": {"_gte": 2, "_lt": 5}})",
       [](const Row& r) { return r.region == "eu" && r.n >= 2 && r.n < 5; }, false},
      {R"({"region": "eu", "n": {"_gt": 2, "_lte": 5}})",
       [](const Row& r) { return r.region == "eu" && r.n > 2 && r.n <= 5; }, false},
      {R"({"region": "eu", "n": {"_gt": 2}})", [](const Row& r) { return r.region == "eu" && r.n > 2; }, false},
      {R"({"region": "eu", "n": {"_lt": 0}})", [](const Row& r) { return r.region == "eu" && r.n < 0; }, false},
      {R"({"region": "eu", "n": {"_lte": -3}})", [](const Row& r) { return r.region == "eu" && r.n <= -3; }, false},
      {R"({"region": "us", "n": 3, "name": "ab"})",
       [](const Row& r) { return r.region == "us" && r.n == 3 && r.name == "ab"; }, false},
      {R"({"region": "us", "n": 3, "name": {"_prefix": "a"}})",
       [](const Row& r) { return r.region == "us" && r.n == 3 && r.name.starts_with("a"); }, false},
      {R"({"region": "us", "n": 3, "name": {"_gt": "a"}})",
       [](const Row& r) { return r.region == "us" && r.n == 3 && r.name > "a"; }, false},
      {R"({"region": {"_prefix": "eu"}})", [](const Row& r) { return r.region.starts_with("eu"); }, false},
      {R"({"region": {"_gte": "e", "_lt": "eu-"}})",
       [](const Row& r) { return r.region >= "e" && r.region < "eu-"; }, false},
      {R"({"region": {"_gt": "eu"}})", [](const Row& r) { return r.region > "eu"; }, false},
      {R"({"region": "eu", "n": {"_gte": 5, "_lt": 2}})", [](const Row&) { return false; }, false},
      {R"({"region": "nowhere"})", [](const Row&) { return false; }, false},
      // Residual: a non-key field, a key field after a gap, a range plus more.
      {R"({"score": {"_gt": 50}})", [](const Row& r) { return r.score > 50; }, true},
      {R"({"region": "eu", "name": "b"})", [](const Row& r) { return r.region == "eu" && r.name == "b"; }, true},
      {R"({"region": "eu", "n": {"_gte": 1}, "score": {"_lt": 30}})",
       [](const Row& r) { return r.region == "eu" && r.n >= 1 && r.score < 30; }, true},
      {R"({"n": 2})", [](const Row& r) { return r.n == 2; }, true},
  };
}

TEST_P(LookupConformance, CompositeKeyFiltersReturnExactlyTheMatchingRecords) {
  InstanceInfo instance = NewInstance();
  std::vector<Row> rows = FilterRows();
  std::vector<Record> records = MakeRecords(rows);
  Write(*service_, instance, records);
  for (const FilterCase& test_case : FilterCases()) {
    std::map<std::string, Content> expected_map;
    for (size_t row_idx = 0; row_idx < rows.size(); ++row_idx) {
      if (test_case.matches(rows[row_idx])) expected_map[records[row_idx].key] = ContentOf(records[row_idx]);
    }
    std::vector<Content> expected = Values(expected_map);
    keys::Filter filter = ParseFilterOrFail(test_case.json);
    driver::QueryRequest request;
    request.filter = filter;
    auto cursors = service_->Query(instance, request);
    ASSERT_TRUE(cursors.ok()) << test_case.json << ": " << cursors.status().ToString();
    for (int32_t page_size : {7, 1000}) {
      ReadAllResult all = ReadAll(*service_, instance, cursors->replay, filter, page_size);
      EXPECT_EQ(ContentsOf(all.records), expected) << test_case.json << " page size " << page_size;
      if (all.pages > 0) {
        if (test_case.residual) {
          EXPECT_TRUE(all.residual_on_every_page) << test_case.json << ": residual not reported";
        } else {
          EXPECT_FALSE(all.residual_on_any_page) << test_case.json << ": a pure key range reported residual";
        }
      }
    }
  }
}

TEST_P(LookupConformance, ResidualFiltersWithASmallScanBudgetPageUntilTheUnionIsExact) {
  InstanceInfo instance = NewInstance();
  std::vector<Row> rows = FilterRows();
  std::vector<Record> records = MakeRecords(rows);
  Write(*service_, instance, records);
  for (const FilterCase& test_case : FilterCases()) {
    if (!test_case.residual) continue;
    std::map<std::string, Content> expected;
    size_t in_range_hint = 0;
    for (size_t row_idx = 0; row_idx < rows.size(); ++row_idx) {
      if (test_case.matches(rows[row_idx])) expected[records[row_idx].key] = ContentOf(records[row_idx]);
    }
    keys::Filter filter = ParseFilterOrFail(test_case.json);
    driver::QueryRequest request;
    request.filter = filter;
    auto cursors = service_->Query(instance, request);
    ASSERT_TRUE(cursors.ok());
    const int64_t budget = 5;
    ReadAllResult all = ReadAll(*service_, instance, cursors->replay, filter, 1000, budget);
    EXPECT_EQ(ContentsOf(all.records), Values(expected)) << test_case.json;
    EXPECT_TRUE(all.residual_on_every_page) << test_case.json;
    in_range_hint = expected.size();
    // A budget smaller than the data forces several pages, some possibly empty.
    EXPECT_GE(all.pages, static_cast<int>(in_range_hint / budget)) << test_case.json;
  }
}

TEST_P(LookupConformance, LogAndChangeReadsApplyTheWholeFilter) {
  InstanceInfo instance = NewInstance();
  std::vector<Row> rows = FilterRows();
  std::vector<Record> records = MakeRecords(rows);
  Write(*service_, instance, records);
  const std::string json = R"({"region": "eu", "n": {"_gte": 0}, "score": {"_gt": 50}})";
  auto matches = [](const Row& r) { return r.region == "eu" && r.n >= 0 && r.score > 50; };
  keys::Filter filter = ParseFilterOrFail(json);
  driver::QueryRequest request;
  request.kind = QueryKind::kLog;
  request.filter = filter;
  auto cursors = service_->Query(instance, request);
  ASSERT_TRUE(cursors.ok());
  std::vector<Content> expected;
  for (size_t row_idx = 0; row_idx < rows.size(); ++row_idx) {
    if (matches(rows[row_idx])) expected.push_back(ContentOf(records[row_idx]));
  }
  ReadAllResult all = ReadAll(*service_, instance, cursors->replay, filter, 4, 9);
  EXPECT_EQ(ContentsOf(all.records), expected);
  EXPECT_TRUE(all.residual_on_every_page);

  // The change cursor of a filtered query is filtered (REFERENCE.md §9.5).
  std::vector<Row> more = {{"eu", 1, "z", 99, "", 2}, {"eu", 1, "y", 10, "", 2}, {"us", 1, "z", 99, "", 2}};
  std::vector<Record> more_records = MakeRecords(more);
  Write(*service_, instance, more_records);
  auto change = service_->ReadCursor(instance, cursors->change, filter, driver::ReadOptions{});
  ASSERT_TRUE(change.ok()) << change.status().ToString();
  ASSERT_EQ(change->records.size(), 1u);
  EXPECT_EQ(ContentOf(change->records[0]), ContentOf(more_records[0]));
  EXPECT_FALSE(change->next.empty());
}

// ---- change cursors and peek ------------------------------------------------------

TEST_P(LookupConformance, ChangeCursorsReturnOnlyLaterWritesAndAlwaysContinue) {
  InstanceInfo instance = NewInstance();
  std::vector<Row> initial;
  for (int row_idx = 0; row_idx < 10; ++row_idx) initial.push_back({"eu", row_idx, "a", row_idx, "", 1});
  Write(*service_, instance, MakeRecords(initial));

  for (QueryKind kind : {QueryKind::kIndex, QueryKind::kLog}) {
    driver::QueryRequest request;
    request.kind = kind;
    auto cursors = service_->Query(instance, request);
    ASSERT_TRUE(cursors.ok());
    ASSERT_FALSE(cursors->change.empty());
    driver::ReadOptions options;
    options.limit = 2;
    auto nothing = service_->ReadCursor(instance, cursors->change, {}, options);
    ASSERT_TRUE(nothing.ok()) << nothing.status().ToString();
    EXPECT_TRUE(nothing->records.empty());
    ASSERT_FALSE(nothing->next.empty());

    std::vector<Row> later;
    for (int row_idx = 0; row_idx < 5; ++row_idx) later.push_back({"us", row_idx, "b", row_idx, "", 2});
    std::vector<Record> later_records = MakeRecords(later);
    Write(*service_, instance, later_records);

    // Page through the change feed two at a time until a page comes back empty.
    std::vector<Record> seen;
    std::string payload = nothing->next;
    for (int page_idx = 0; page_idx < 10; ++page_idx) {
      auto page = service_->ReadCursor(instance, payload, {}, options);
      ASSERT_TRUE(page.ok()) << page.status().ToString();
      ASSERT_FALSE(page->next.empty()) << "a change read must always return a next cursor";
      payload = page->next;
      if (page->records.empty()) break;
      for (Record& record : page->records) seen.push_back(record);
    }
    EXPECT_EQ(ContentsOf(seen), ContentsOf(later_records));
    // Reading the first change cursor again gives the same records: it is a position.
    auto again = service_->ReadCursor(instance, cursors->change, {}, driver::ReadOptions{});
    ASSERT_TRUE(again.ok());
    EXPECT_EQ(ContentsOf(again->records), ContentsOf(later_records));

    std::vector<Record> last = MakeRecords({{"zz", 1, "c", 1, "", 3}});
    Write(*service_, instance, last);
    auto tail = service_->ReadCursor(instance, payload, {}, options);
    ASSERT_TRUE(tail.ok());
    EXPECT_EQ(ContentsOf(tail->records), ContentsOf(last));
    EXPECT_FALSE(tail->next.empty());
  }
}

TEST_P(LookupConformance, PeekReturnsNewestFirstAndPagesBackwards) {
  InstanceInfo instance = NewInstance();
  auto empty = service_->Peek(instance);
  ASSERT_TRUE(empty.ok()) << empty.status().ToString();
  EXPECT_TRUE(empty->rewind.empty());
  EXPECT_FALSE(empty->change.empty());

  std::vector<Record> written;
  for (int batch_idx = 0; batch_idx < 3; ++batch_idx) {
    std::vector<Row> rows;
    for (int row_idx = 0; row_idx < 7; ++row_idx) rows.push_back({"eu", row_idx, "p", batch_idx, "", batch_idx});
    std::vector<Record> batch = MakeRecords(rows);
    Write(*service_, instance, batch);
    written.insert(written.end(), batch.begin(), batch.end());
  }
  auto peek = service_->Peek(instance);
  ASSERT_TRUE(peek.ok());
  ASSERT_FALSE(peek->rewind.empty());
  std::vector<Record> newest_first = ReadAll(*service_, instance, peek->rewind, {}, 3).records;
  std::vector<Content> expected = ContentsOf(written);
  std::reverse(expected.begin(), expected.end());
  EXPECT_EQ(ContentsOf(newest_first), expected);
  for (size_t record_idx = 0; record_idx < newest_first.size(); ++record_idx) {
    EXPECT_EQ(newest_first[record_idx].offset, static_cast<int64_t>(written.size() - 1 - record_idx));
  }

  std::vector<Record> later = MakeRecords({{"us", 9, "q", 1, "", 9}});
  Write(*service_, instance, later);
  auto change = service_->ReadCursor(instance, peek->change, {}, driver::ReadOptions{});
  ASSERT_TRUE(change.ok());
  EXPECT_EQ(ContentsOf(change->records), ContentsOf(later));
}

// ---- instances -------------------------------------------------------------------

TEST_P(LookupConformance, RemovingAnInstanceDeletesItsLogIndexAndSequenceOnly) {
  InstanceInfo doomed = NewInstance();
  InstanceInfo kept = NewInstance();
  std::vector<Record> doomed_records = MakeRecords({{"eu", 1, "a", 1, "", 1}, {"eu", 2, "a", 2, "", 2}});
  std::vector<Record> kept_records = MakeRecords({{"eu", 1, "a", 3, "", 1}, {"us", 2, "b", 4, "", 2}});
  Write(*service_, doomed, doomed_records);
  Write(*service_, kept, kept_records);
  driver::QueryRequest index_request;
  driver::QueryRequest log_request;
  log_request.kind = QueryKind::kLog;
  auto old_index = service_->Query(doomed, index_request);
  auto old_log = service_->Query(doomed, log_request);
  ASSERT_TRUE(old_index.ok() && old_log.ok());
  std::vector<Content> kept_index = ContentsOf(ReadIndex(*service_, kept));
  std::vector<Content> kept_log = ContentsOf(ReadLog(*service_, kept));

  ASSERT_TRUE(service_->RemoveInstance(doomed).ok());
  EXPECT_TRUE(ReadIndex(*service_, doomed).empty());
  EXPECT_TRUE(ReadLog(*service_, doomed).empty());
  // Payloads made before the removal find nothing either.
  EXPECT_TRUE(ReadAll(*service_, doomed, old_index->replay, {}, 100).records.empty());
  EXPECT_TRUE(ReadAll(*service_, doomed, old_log->replay, {}, 100).records.empty());
  auto peek = service_->Peek(doomed);
  ASSERT_TRUE(peek.ok());
  EXPECT_TRUE(ReadAll(*service_, doomed, peek->rewind, {}, 100).records.empty());
  // Idempotent.
  EXPECT_TRUE(service_->RemoveInstance(doomed).ok());

  EXPECT_EQ(ContentsOf(ReadIndex(*service_, kept)), kept_index);
  EXPECT_EQ(ContentsOf(ReadLog(*service_, kept)), kept_log);

  // The sequence went too: a new write starts again at offset 0.
  std::vector<Record> fresh = MakeRecords({{"new", 1, "a", 1, "", 1}});
  Write(*service_, doomed, fresh);
  std::vector<Record> log = ReadLog(*service_, doomed);
  ASSERT_EQ(log.size(), 1u);
  EXPECT_EQ(log[0].offset, 0);
  EXPECT_EQ(ContentOf(log[0]), ContentOf(fresh[0]));
}

TEST_P(LookupConformance, RegisteringAnInstanceTwiceSucceeds) {
  InstanceInfo instance = NewInstance();
  ASSERT_TRUE(service_->RegisterInstance(instance).ok());
  Write(*service_, instance, MakeRecords({{"eu", 1, "a", 1, "", 1}}));
  instance.log_retention_ms = 3'600'000;
  Status again = service_->RegisterInstance(instance);
  EXPECT_TRUE(again.ok()) << again.ToString();
  EXPECT_EQ(ReadIndex(*service_, instance).size(), 1u);
}

TEST_P(LookupConformance, ReopeningKeepsDataAndOffsetsContinueDensely) {
  InstanceInfo instance = NewInstance();
  std::vector<Row> rows;
  for (int row_idx = 0; row_idx < 10; ++row_idx) rows.push_back({"eu", row_idx, "a", row_idx, "", row_idx});
  std::vector<Record> first = MakeRecords(rows);
  Write(*service_, instance, first);
  std::vector<Content> index_before = ContentsOf(ReadIndex(*service_, instance));

  Reopen();
  ASSERT_NE(service_, nullptr);
  EXPECT_EQ(ContentsOf(ReadIndex(*service_, instance)), index_before);
  std::vector<Record> second = MakeRecords({{"us", 1, "a", 1, "", 1}, {"us", 2, "a", 1, "", 1}});
  Write(*service_, instance, second);
  std::vector<Record> log = ReadLog(*service_, instance);
  ASSERT_EQ(log.size(), 12u);
  for (size_t record_idx = 0; record_idx < log.size(); ++record_idx) {
    EXPECT_EQ(log[record_idx].offset, static_cast<int64_t>(record_idx));
  }
  EXPECT_EQ(ContentOf(log[11]), ContentOf(second[1]));
}

TEST_P(LookupConformance, UseLogAndUseIndexFlagsAreHonoured) {
  InstanceInfo index_only = NewInstance(/*use_log=*/false, /*use_index=*/true);
  std::vector<Record> records = MakeRecords({{"eu", 1, "a", 1, "", 1}, {"eu", 1, "a", 2, "", 2}});
  Write(*service_, index_only, records);
  std::vector<Record> index = ReadIndex(*service_, index_only);
  ASSERT_EQ(index.size(), 1u);
  EXPECT_EQ(ContentOf(index[0]), ContentOf(records[1]));
  driver::QueryRequest log_request;
  log_request.kind = QueryKind::kLog;
  EXPECT_EQ(service_->Query(index_only, log_request).status().code(), StatusCode::kInvalidArgument);
  // The instance's log really is empty: the same id with the log turned on finds nothing.
  InstanceInfo same_with_log = index_only;
  same_with_log.use_log = true;
  EXPECT_TRUE(ReadLog(*service_, same_with_log).empty());

  InstanceInfo log_only = NewInstance(/*use_log=*/true, /*use_index=*/false);
  Write(*service_, log_only, records);
  EXPECT_EQ(ContentsOf(ReadLog(*service_, log_only)), ContentsOf(records));
  EXPECT_EQ(service_->Query(log_only, driver::QueryRequest{}).status().code(), StatusCode::kInvalidArgument);
  InstanceInfo same_with_index = log_only;
  same_with_index.use_index = true;
  EXPECT_TRUE(ReadIndex(*service_, same_with_index).empty());
}

TEST_P(LookupConformance, ConcurrentWritersToOneInstanceGetDenseOffsetsAndTheRightIndex) {
  InstanceInfo instance = NewInstance();
  constexpr int kThreads = 4, kBatches = 15, kPerBatch = 20;
  std::vector<std::vector<Record>> per_thread(kThreads);
  std::vector<std::thread> threads;
  std::atomic<int> failures{0};
  for (int thread_idx = 0; thread_idx < kThreads; ++thread_idx) {
    threads.emplace_back([&, thread_idx] {
      std::mt19937_64 rng(thread_idx);
      for (int batch_idx = 0; batch_idx < kBatches; ++batch_idx) {
        std::vector<Row> rows;
        for (int row_idx = 0; row_idx < kPerBatch; ++row_idx) {
          rows.push_back({"eu", static_cast<int64_t>(rng() % 10), "c", thread_idx * 10'000 + batch_idx * 100 + row_idx,
                          "", static_cast<int64_t>(rng() % 5)});
        }
        std::vector<Record> batch = MakeRecords(rows);
        if (!service_->WriteRecords(instance, batch, {}).ok()) ++failures;
        per_thread[thread_idx].insert(per_thread[thread_idx].end(), batch.begin(), batch.end());
      }
    });
  }
  for (auto& thread : threads) thread.join();
  ASSERT_EQ(failures.load(), 0);

  std::vector<Record> log = ReadLog(*service_, instance);
  ASSERT_EQ(log.size(), static_cast<size_t>(kThreads * kBatches * kPerBatch));
  std::multiset<Content> written, logged;
  for (const auto& records : per_thread) {
    for (const Record& record : records) written.insert(ContentOf(record));
  }
  for (size_t record_idx = 0; record_idx < log.size(); ++record_idx) {
    EXPECT_EQ(log[record_idx].offset, static_cast<int64_t>(record_idx));
    logged.insert(ContentOf(log[record_idx]));
  }
  EXPECT_EQ(logged, written);
  // The log order is the write order the service chose; the index must agree with it.
  EXPECT_EQ(ContentsOf(ReadIndex(*service_, instance)), Values(ModelIndex(log)));
}

// ---- limits and validation ----------------------------------------------------------

std::string KeyOfSize(size_t size) {
  std::string key;
  keys::AppendString(&key, std::string(size - 2, 'k'));  // type byte + text + terminator
  return key;
}

TEST_P(LookupConformance, KeysOverTheLimitAreRejectedAndNothingIsWritten) {
  InstanceInfo instance = NewInstance();
  const driver::Limits limits = service_->capabilities().limits;
  std::vector<Record> batch = MakeRecords({{"eu", 1, "a", 1, "", 1}, {"eu", 2, "a", 1, "", 1}, {"eu", 3, "a", 1, "", 1}});
  batch[1].key = KeyOfSize(limits.max_key_size);
  batch[2].key = KeyOfSize(limits.max_key_size + 1);
  Status status = service_->WriteRecords(instance, batch, {});
  EXPECT_EQ(status.code(), StatusCode::kInvalidArgument) << status.ToString();
  EXPECT_THAT(status.message(), HasSubstr("record 2"));
  EXPECT_THAT(status.message(), HasSubstr(std::to_string(limits.max_key_size + 1)));
  EXPECT_TRUE(ReadLog(*service_, instance).empty());
  EXPECT_TRUE(ReadIndex(*service_, instance).empty());

  batch.pop_back();  // a key of exactly the limit is fine
  Write(*service_, instance, batch);
  EXPECT_EQ(ReadIndex(*service_, instance).size(), 2u);
}

TEST_P(LookupConformance, RecordsOverTheLimitAreRejectedAndNothingIsWritten) {
  InstanceInfo instance = NewInstance();
  const driver::Limits limits = service_->capabilities().limits;
  // Find a note length that makes the Avro record exactly the limit.
  size_t note_size = limits.max_record_size - 64;
  Record at_limit;
  for (int attempt = 0; attempt < 8; ++attempt) {
    at_limit = MakeRecord({"eu", 1, "a", 1, std::string(note_size, 'n'), 1});
    if (at_limit.avro.size() == limits.max_record_size) break;
    note_size += limits.max_record_size - at_limit.avro.size();
  }
  ASSERT_EQ(at_limit.avro.size(), limits.max_record_size);
  Record over = MakeRecord({"eu", 2, "a", 1, std::string(note_size + 1, 'n'), 1});
  ASSERT_EQ(over.avro.size(), limits.max_record_size + 1);

  std::vector<Record> batch = {MakeRecord({"eu", 0, "a", 1, "", 1}), over};
  Status status = service_->WriteRecords(instance, batch, {});
  EXPECT_EQ(status.code(), StatusCode::kInvalidArgument) << status.ToString();
  EXPECT_THAT(status.message(), HasSubstr("record 1"));
  EXPECT_THAT(status.message(), HasSubstr(std::to_string(limits.max_record_size + 1)));
  EXPECT_TRUE(ReadLog(*service_, instance).empty());
  EXPECT_TRUE(ReadIndex(*service_, instance).empty());

  Write(*service_, instance, {at_limit});
  std::vector<Record> index = ReadIndex(*service_, instance);
  ASSERT_EQ(index.size(), 1u);
  EXPECT_EQ(ContentOf(index[0]), ContentOf(at_limit));
}

TEST_P(LookupConformance, BatchesOverTheLimitAreRejectedAndNothingIsWritten) {
  InstanceInfo instance = NewInstance();
  const driver::Limits limits = service_->capabilities().limits;
  Record small = MakeRecord({"eu", 1, "a", 1, "", 1});
  std::vector<Record> batch(limits.max_records_in_batch + 1, small);
  Status status = service_->WriteRecords(instance, batch, {});
  EXPECT_EQ(status.code(), StatusCode::kInvalidArgument) << status.ToString();
  EXPECT_THAT(status.message(), HasSubstr(std::to_string(limits.max_records_in_batch + 1)));
  EXPECT_THAT(status.message(), HasSubstr(std::to_string(limits.max_records_in_batch)));
  EXPECT_TRUE(ReadLog(*service_, instance).empty());
  EXPECT_TRUE(ReadIndex(*service_, instance).empty());

  batch.pop_back();
  Write(*service_, instance, batch);
  EXPECT_EQ(ReadLog(*service_, instance).size(), limits.max_records_in_batch);
}

TEST_P(LookupConformance, LimitsOutsideOneToAThousandAreRejected) {
  InstanceInfo instance = NewInstance();
  Write(*service_, instance, MakeRecords({{"eu", 1, "a", 1, "", 1}}));
  auto cursors = service_->Query(instance, driver::QueryRequest{});
  ASSERT_TRUE(cursors.ok());
  for (int32_t limit : {0, -1, 1001, 1'000'000}) {
    driver::ReadOptions options;
    options.limit = limit;
    EXPECT_EQ(service_->ReadCursor(instance, cursors->replay, {}, options).status().code(),
              StatusCode::kInvalidArgument)
        << "limit " << limit;
    EXPECT_EQ(service_->ReadCursor(instance, cursors->change, {}, options).status().code(),
              StatusCode::kInvalidArgument)
        << "limit " << limit;
  }
  for (int32_t limit : {1, 1000}) {
    driver::ReadOptions options;
    options.limit = limit;
    auto page = service_->ReadCursor(instance, cursors->replay, {}, options);
    ASSERT_TRUE(page.ok()) << "limit " << limit << ": " << page.status().ToString();
    EXPECT_EQ(page->records.size(), 1u);
  }
}

TEST_P(LookupConformance, AnEmptyPayloadGivesAnEmptyResult) {
  InstanceInfo instance = NewInstance();
  Write(*service_, instance, MakeRecords({{"eu", 1, "a", 1, "", 1}}));
  auto page = service_->ReadCursor(instance, "", {}, driver::ReadOptions{});
  ASSERT_TRUE(page.ok()) << page.status().ToString();
  EXPECT_TRUE(page->records.empty());
  EXPECT_TRUE(page->next.empty());
}

TEST_P(LookupConformance, CorruptPayloadsAreRejectedWithInvalidArgument) {
  InstanceInfo instance = NewInstance();
  std::vector<Record> records = MakeRecords(FilterRows());
  Write(*service_, instance, records);
  std::set<std::string> own_keys;
  for (const Record& record : records) own_keys.insert(record.key);

  keys::Filter filter = ParseFilterOrFail(R"({"region": "eu", "n": {"_gte": 1}})");
  driver::QueryRequest index_request;
  index_request.filter = filter;
  driver::QueryRequest log_request;
  log_request.kind = QueryKind::kLog;
  log_request.filter = filter;
  auto index = service_->Query(instance, index_request);
  auto log = service_->Query(instance, log_request);
  auto peek = service_->Peek(instance);
  ASSERT_TRUE(index.ok() && log.ok() && peek.ok());
  driver::ReadOptions one;
  one.limit = 1;
  auto index_page = service_->ReadCursor(instance, index->replay, filter, one);
  auto log_page = service_->ReadCursor(instance, log->replay, filter, one);
  ASSERT_TRUE(index_page.ok() && log_page.ok());
  std::vector<std::string> payloads = {index->replay, index->change, log->replay, log->change,
                                       peek->rewind,  peek->change,  index_page->next, log_page->next};
  for (const std::string& payload : payloads) {
    ASSERT_FALSE(payload.empty());
    for (size_t length = 1; length < payload.size(); ++length) {
      EXPECT_EQ(service_->ReadCursor(instance, payload.substr(0, length), filter, {}).status().code(),
                StatusCode::kInvalidArgument)
          << "payload truncated to " << length << " of " << payload.size() << " bytes";
    }
    EXPECT_EQ(service_->ReadCursor(instance, payload + '\x00', filter, {}).status().code(),
              StatusCode::kInvalidArgument)
        << "payload with a trailing byte";
  }
  EXPECT_EQ(service_->ReadCursor(instance, std::string(4, '\xff'), filter, {}).status().code(),
            StatusCode::kInvalidArgument);
  EXPECT_EQ(service_->ReadCursor(instance, std::string(1, '\0'), filter, {}).status().code(),
            StatusCode::kInvalidArgument);

  // Random bytes and random byte flips: never a crash, never another
  // instance's data, and any error is InvalidArgument.
  std::mt19937_64 rng(7);
  for (int attempt = 0; attempt < 2000; ++attempt) {
    std::string payload;
    if (attempt % 2 == 0) {
      payload.resize(1 + rng() % 48);
      for (char& c : payload) c = static_cast<char>(rng());
    } else {
      payload = payloads[rng() % payloads.size()];
      payload[rng() % payload.size()] ^= static_cast<char>(1 + rng() % 255);
    }
    auto page = service_->ReadCursor(instance, payload, filter, {});
    if (!page.ok()) {
      EXPECT_EQ(page.status().code(), StatusCode::kInvalidArgument) << page.status().ToString();
      continue;
    }
    for (const Record& record : page->records) EXPECT_TRUE(own_keys.count(record.key));
  }
}

TEST_P(LookupConformance, PayloadsReadOnlyTheInstanceTheEnginePasses) {
  InstanceInfo a = NewInstance();
  InstanceInfo b = NewInstance();
  std::vector<Record> a_records = MakeRecords({{"a", 1, "x", 1, "", 1}, {"a", 2, "x", 1, "", 1}});
  std::vector<Record> b_records = MakeRecords({{"b", 1, "x", 1, "", 1}});
  Write(*service_, a, a_records);
  Write(*service_, b, b_records);
  driver::QueryRequest log_request;
  log_request.kind = QueryKind::kLog;
  auto a_index = service_->Query(a, driver::QueryRequest{});
  auto a_log = service_->Query(a, log_request);
  ASSERT_TRUE(a_index.ok() && a_log.ok());
  EXPECT_EQ(ContentsOf(ReadAll(*service_, b, a_index->replay, {}, 100).records), ContentsOf(b_records));
  for (const Record& record : ReadAll(*service_, b, a_log->replay, {}, 100).records) {
    EXPECT_EQ(ContentOf(record), ContentOf(b_records[0]));
  }
}

TEST_P(LookupConformance, ResetDropsEverythingAndTheServiceStaysUsable) {
  InstanceInfo a = NewInstance();
  InstanceInfo b = NewInstance();
  Write(*service_, a, MakeRecords({{"a", 1, "x", 1, "", 1}}));
  Write(*service_, b, MakeRecords({{"b", 1, "x", 1, "", 1}, {"b", 2, "x", 1, "", 1}}));
  ASSERT_TRUE(service_->Reset().ok());
  EXPECT_TRUE(ReadIndex(*service_, a).empty());
  EXPECT_TRUE(ReadLog(*service_, b).empty());
  std::vector<Record> again = MakeRecords({{"b", 3, "x", 1, "", 1}});
  Write(*service_, b, again);
  std::vector<Record> log = ReadLog(*service_, b);
  ASSERT_EQ(log.size(), 1u);
  EXPECT_EQ(log[0].offset, 0);
}

// ---- retention ----------------------------------------------------------------------

std::vector<int64_t> OffsetsOf(const std::vector<Record>& records) {
  std::vector<int64_t> out;
  for (const Record& record : records) out.push_back(record.offset);
  return out;
}
std::vector<int64_t> ScoresOf(const std::vector<Record>& records) {
  std::vector<int64_t> out;
  for (const Record& record : records) {
    auto value = schema::DecodeAvro(*TestSchema(), record.avro);
    EXPECT_TRUE(value.ok()) << value.status().ToString();
    if (!value.ok()) continue;
    const auto& fields = std::get<schema::Value::kRecordIndex>(value->v);
    out.push_back(std::get<int64_t>(fields[3].v));  // score
  }
  return out;
}
// Every record a change payload yields now, and the payload to continue from.
std::vector<Record> ReadChange(driver::LookupService& service, const InstanceInfo& instance, std::string* payload) {
  driver::ReadOptions options;
  options.limit = 1000;
  auto page = service.ReadCursor(instance, *payload, {}, options);
  EXPECT_TRUE(page.ok()) << page.status().ToString();
  if (!page.ok()) return {};
  EXPECT_FALSE(page->next.empty());
  *payload = page->next;
  return page->records;
}
constexpr int64_t kMicrosPerMs = 1000;

// log_retention_ms and index_retention_ms by the driver's clock: a record
// exactly `retention` old is served, one 1 ms older is not, whether or not it
// was purged yet; a key whose latest record expired leaves the index; cursors
// from before continue from the oldest record kept; PurgeExpired deletes
// what expired from storage, and offsets are never reused.
TEST_P(LookupConformance, RetentionHidesExpiredRecordsAtOnceAndPurgeDeletesThem) {
  constexpr int64_t kRetentionMs = 60'000;
  InstanceInfo instance = NewInstance();
  instance.log_retention_ms = kRetentionMs;
  instance.index_retention_ms = kRetentionMs;
  ASSERT_TRUE(service_->RegisterInstance(instance).ok());
  driver::QueryRequest log_query;
  log_query.kind = QueryKind::kLog;
  auto before = service_->Query(instance, log_query);
  ASSERT_TRUE(before.ok()) << before.status().ToString();
  std::string change = before->change;  // a subscriber from before the first write

  const int64_t t0 = clock_.NowMillis();
  Write(*service_, instance, MakeRecords({{"eu", 1, "a", 1, "", t0}, {"eu", 2, "a", 2, "", t0}, {"eu", 3, "a", 3, "", t0}}));
  clock_.Advance(30'000 * kMicrosPerMs);
  Write(*service_, instance, MakeRecords({{"eu", 2, "a", 20, "", t0 + 30'000}, {"eu", 4, "a", 4, "", t0 + 30'000}}));
  // The subscriber's cursor moves to offset 5 now; a second one stays at 0.
  EXPECT_EQ(OffsetsOf(ReadChange(*service_, instance, &change)), (std::vector<int64_t>{0, 1, 2, 3, 4}));
  std::string stale = before->change;

  clock_.Advance(30'000 * kMicrosPerMs);  // the first batch is exactly kRetentionMs old: still kept
  EXPECT_EQ(OffsetsOf(ReadLog(*service_, instance)), (std::vector<int64_t>{0, 1, 2, 3, 4}));
  EXPECT_EQ(ScoresOf(ReadIndex(*service_, instance)), (std::vector<int64_t>{1, 20, 3, 4}));

  clock_.Advance(1 * kMicrosPerMs);  // now 1 ms past: expired, not purged yet
  auto check_reads = [&](const char* when) {
    SCOPED_TRACE(when);
    EXPECT_EQ(OffsetsOf(ReadLog(*service_, instance)), (std::vector<int64_t>{3, 4}));
    // (eu,1) and (eu,3) leave the index; (eu,2) keeps its newer record.
    EXPECT_EQ(ScoresOf(ReadIndex(*service_, instance)), (std::vector<int64_t>{20, 4}));
    // Filters and key ranges see the same.
    EXPECT_TRUE(ReadIndex(*service_, instance, R"({"region":"eu","n":1})").empty());
    EXPECT_EQ(ScoresOf(ReadLog(*service_, instance, R"({"region": "eu", "n": {"_gte": 2}})")), (std::vector<int64_t>{20, 4}));
    // A cursor into the expired head continues from the oldest record kept
    // (Kafka's auto.offset.reset=earliest), never an error.
    std::string from_start = stale;
    EXPECT_EQ(OffsetsOf(ReadChange(*service_, instance, &from_start)), (std::vector<int64_t>{3, 4}));
    auto peek = service_->Peek(instance);
    ASSERT_TRUE(peek.ok()) << peek.status().ToString();
    EXPECT_EQ(OffsetsOf(ReadAll(*service_, instance, peek->rewind, {}, 1000).records),
              (std::vector<int64_t>{4, 3}));
  };
  check_reads("expired, before the purge");

  auto purged = service_->PurgeExpired(instance);
  ASSERT_TRUE(purged.ok()) << purged.status().ToString();
  EXPECT_EQ(*purged, 3 + 2) << "three log records and two index rows expired";
  auto stored = service_->CountStored(instance);
  ASSERT_TRUE(stored.ok()) << stored.status().ToString();
  EXPECT_EQ(*stored, (driver::StoredRecords{2, 2}));
  check_reads("after the purge");
  auto again = service_->PurgeExpired(instance);
  ASSERT_TRUE(again.ok()) << again.status().ToString();
  EXPECT_EQ(*again, 0);

  // Offsets are never reused, and the subscriber goes on where it was.
  Write(*service_, instance, MakeRecords({{"eu", 1, "a", 5, "", clock_.NowMillis()}}));
  EXPECT_EQ(OffsetsOf(ReadChange(*service_, instance, &change)), (std::vector<int64_t>{5}));
  EXPECT_EQ(OffsetsOf(ReadLog(*service_, instance)), (std::vector<int64_t>{3, 4, 5}));
}

// The log's and the index's retentions are separate, a record already
// expired when written is never served, and a retention changed later (the
// InstanceInfo of the call, re-registered) applies to the next read and purge.
TEST_P(LookupConformance, RetentionOfLogAndIndexAreSeparateAndAChangeAppliesAtOnce) {
  InstanceInfo instance = NewInstance();
  instance.log_retention_ms = 10'000;
  instance.index_retention_ms = 0;  // forever
  ASSERT_TRUE(service_->RegisterInstance(instance).ok());
  const int64_t t0 = clock_.NowMillis();
  Write(*service_, instance, MakeRecords({{"eu", 1, "a", 1, "", t0}, {"eu", 9, "a", 9, "", t0 - 10'001}}));
  EXPECT_EQ(ScoresOf(ReadLog(*service_, instance)), (std::vector<int64_t>{1})) << "expired on arrival";
  clock_.Advance(20'000 * kMicrosPerMs);
  Write(*service_, instance, MakeRecords({{"eu", 2, "a", 2, "", t0 + 20'000}}));
  EXPECT_EQ(ScoresOf(ReadLog(*service_, instance)), (std::vector<int64_t>{2}));
  EXPECT_EQ(ScoresOf(ReadIndex(*service_, instance)), (std::vector<int64_t>{1, 2, 9}));
  auto purged = service_->PurgeExpired(instance);
  ASSERT_TRUE(purged.ok()) << purged.status().ToString();
  EXPECT_EQ(*purged, 2);
  auto stored = service_->CountStored(instance);
  ASSERT_TRUE(stored.ok()) << stored.status().ToString();
  EXPECT_EQ(*stored, (driver::StoredRecords{1, 3}));

  InstanceInfo shorter = instance;
  shorter.index_retention_ms = 15'000;
  ASSERT_TRUE(service_->RegisterInstance(shorter).ok());
  EXPECT_EQ(ScoresOf(ReadIndex(*service_, shorter)), (std::vector<int64_t>{2}));
  purged = service_->PurgeExpired(shorter);
  ASSERT_TRUE(purged.ok()) << purged.status().ToString();
  EXPECT_EQ(*purged, 2);
  stored = service_->CountStored(shorter);
  ASSERT_TRUE(stored.ok()) << stored.status().ToString();
  EXPECT_EQ(*stored, (driver::StoredRecords{1, 1}));

  // Back to forever: what was purged stays gone.
  InstanceInfo forever = shorter;
  forever.log_retention_ms = 0;
  forever.index_retention_ms = 0;
  ASSERT_TRUE(service_->RegisterInstance(forever).ok());
  EXPECT_EQ(ScoresOf(ReadLog(*service_, forever)), (std::vector<int64_t>{2}));
  EXPECT_EQ(ScoresOf(ReadIndex(*service_, forever)), (std::vector<int64_t>{2}));
  purged = service_->PurgeExpired(forever);
  ASSERT_TRUE(purged.ok()) << purged.status().ToString();
  EXPECT_EQ(*purged, 0);
}

}  // namespace
}  // namespace aquifer::conformance
