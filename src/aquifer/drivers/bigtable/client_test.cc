// The Bigtable client against the emulator (AQUIFER_TEST_BIGTABLE, scripts/peers/bigtable):
// MutateRows split by the service's 100,000-mutation limit and by max_request_bytes, an entry
// failing for good reported while the others are applied, ReadRows with ranges, limits and
// filters, CheckAndMutateRow both ways. Without the variable every test fails saying how to
// start the emulator.

#include "aquifer/drivers/bigtable/client.h"

#include <gtest/gtest.h>

#include "aquifer/base/uuid.h"
#include "aquifer/drivers/bigtable/testing.h"

namespace aquifer::drivers::bigtable {
namespace {

class BigtableClientTest : public ::testing::Test {
 protected:
  void SetUp() override { ASSERT_NO_FATAL_FAILURE(Open(3 << 20)); }
  void Open(int64_t max_request_bytes) {
    auto config = testing::TestConfig(Uuid::Random().ToString());
    ASSERT_TRUE(config.ok()) << config.status().ToString();
    (*config)["max_request_bytes"] = std::to_string(max_request_bytes);
    auto options = ParseClientOptions(*config);
    ASSERT_TRUE(options.ok()) << options.status().ToString();
    client_ = std::make_unique<Client>(*options);
    std::map<std::string, admin::GcRule> families;
    families["f"].set_max_num_versions(1);
    Status made = client_->EnsureTable("t", families);
    ASSERT_TRUE(made.ok()) << made.ToString();
    ASSERT_TRUE(client_->EnsureTable("t", families).ok()) << "creating an existing table is OK";
    table_ = client_->TablePath("t");
  }
  std::vector<Row> ReadAll(v2::ReadRowsRequest request = {}) {
    request.set_table_name(table_);
    std::vector<Row> rows;
    Status read = client_->ReadRowsInto(std::move(request), &rows);
    EXPECT_TRUE(read.ok()) << read.ToString();
    return rows;
  }
  static v2::MutateRowsRequest::Entry SetEntry(std::string key, std::string value) {
    v2::MutateRowsRequest::Entry entry;
    entry.set_row_key(std::move(key));
    AddSetCell(entry.mutable_mutations(), "f", "c", value);
    return entry;
  }

  std::unique_ptr<Client> client_;
  std::string table_;
};

TEST_F(BigtableClientTest, MutateRowsSplitsCallsAtTheServiceMutationLimit) {
  // Three rows of 40,000 mutations of one cell (the emulator is slow with many columns per
  // row): 120,000 mutations, more than one call may carry.
  std::vector<v2::MutateRowsRequest::Entry> entries;
  for (int row_idx = 0; row_idx < 3; ++row_idx) {
    auto& entry = entries.emplace_back();
    entry.set_row_key("row" + std::to_string(row_idx));
    for (int cell_idx = 0; cell_idx < 40'000; ++cell_idx) AddSetCell(entry.mutable_mutations(), "f", "c", std::to_string(cell_idx));
  }
  Status done = client_->MutateRows(table_, std::move(entries));
  ASSERT_TRUE(done.ok()) << done.ToString();
  EXPECT_EQ(client_->mutate_calls(), 2);
  std::vector<Row> rows = ReadAll();
  ASSERT_EQ(rows.size(), 3u);
  for (const Row& row : rows) {
    ASSERT_EQ(row.cells.size(), 1u) << row.key;
    EXPECT_EQ(row.cells[0].value, "39999") << "mutations of an entry apply in order";
  }

  v2::MutateRowsRequest::Entry too_big;
  too_big.set_row_key("huge");
  for (size_t cell_idx = 0; cell_idx <= kMaxMutationsPerCall; ++cell_idx) AddSetCell(too_big.mutable_mutations(), "f", "c", "v");
  std::vector<v2::MutateRowsRequest::Entry> refused;
  refused.push_back(std::move(too_big));
  EXPECT_EQ(client_->MutateRows(table_, std::move(refused)).code(), StatusCode::kInvalidArgument);
  EXPECT_EQ(client_->mutate_calls(), 2) << "nothing sent";
}

TEST_F(BigtableClientTest, MutateRowsSplitsCallsByBytes) {
  ASSERT_NO_FATAL_FAILURE(Open(2048));
  std::vector<v2::MutateRowsRequest::Entry> entries;
  for (int row_idx = 0; row_idx < 100; ++row_idx) entries.push_back(SetEntry(fmt::format("k{:03}", row_idx), std::string(100, 'x')));
  ASSERT_TRUE(client_->MutateRows(table_, std::move(entries)).ok());
  EXPECT_GE(client_->mutate_calls(), 5) << "100 entries of ~120 bytes in calls of at most 2 KiB";
  EXPECT_EQ(ReadAll().size(), 100u);
}

TEST_F(BigtableClientTest, AnEntryFailingForGoodIsReportedAndTheOthersAreApplied) {
  std::vector<v2::MutateRowsRequest::Entry> entries;
  entries.push_back(SetEntry("a", "1"));
  auto& bad = entries.emplace_back();
  bad.set_row_key("b");
  AddSetCell(bad.mutable_mutations(), "no_such_family", "c", "2");
  entries.push_back(SetEntry("c", "3"));
  Status done = client_->MutateRows(table_, std::move(entries));
  EXPECT_FALSE(done.ok());
  EXPECT_NE(done.code(), StatusCode::kUnavailable) << "not retryable: " << done.ToString();
  EXPECT_EQ(client_->mutate_calls(), 1) << "a permanent failure is not retried";
  std::vector<Row> rows = ReadAll();
  ASSERT_EQ(rows.size(), 2u);
  EXPECT_EQ(rows[0].key, "a");
  EXPECT_EQ(rows[1].key, "c");
}

TEST_F(BigtableClientTest, ReadRowsHonoursRangesLimitsAndFilters) {
  std::vector<v2::MutateRowsRequest::Entry> entries;
  for (int row_idx = 0; row_idx < 20; ++row_idx) {
    auto entry = SetEntry(fmt::format("k{:02}", row_idx), std::to_string(row_idx));
    AddSetCell(entry.mutable_mutations(), "f", "other", "o");
    entries.push_back(std::move(entry));
  }
  ASSERT_TRUE(client_->MutateRows(table_, std::move(entries)).ok());
  v2::ReadRowsRequest request;
  auto* range = request.mutable_rows()->add_row_ranges();
  range->set_start_key_open("k04");
  range->set_end_key_closed("k15");
  request.set_rows_limit(5);
  *request.mutable_filter() = ColumnFilter("f", "c");
  std::vector<Row> rows = ReadAll(request);
  ASSERT_EQ(rows.size(), 5u);
  for (size_t row_idx = 0; row_idx < rows.size(); ++row_idx) {
    EXPECT_EQ(rows[row_idx].key, fmt::format("k{:02}", row_idx + 5));
    ASSERT_EQ(rows[row_idx].cells.size(), 1u) << "the column filter keeps f:c only";
    EXPECT_EQ(rows[row_idx].cells[0].value, std::to_string(row_idx + 5));
  }
  v2::ReadRowsRequest keys;
  keys.mutable_rows()->add_row_keys("k19");
  keys.mutable_rows()->add_row_keys("k00");
  keys.mutable_rows()->add_row_keys("missing");
  rows = ReadAll(keys);
  ASSERT_EQ(rows.size(), 2u);
  EXPECT_EQ(rows[0].key, "k00");
  EXPECT_EQ(rows[1].key, "k19");
}

TEST_F(BigtableClientTest, CheckAndMutateRowAppliesTheBranchThePredicateChooses) {
  auto set_if = [&](std::string_view expected, std::string_view next) {
    v2::CheckAndMutateRowRequest request;
    request.set_table_name(table_);
    request.set_row_key("r");
    auto* chain = request.mutable_predicate_filter()->mutable_chain();
    chain->add_filters()->set_column_qualifier_regex_filter(ExactRegex("c"));
    chain->add_filters()->set_value_regex_filter(ExactRegex(expected));
    AddSetCell(request.mutable_true_mutations(), "f", "c", next);
    return client_->CheckAndMutateRow(std::move(request));
  };
  std::vector<v2::MutateRowsRequest::Entry> entries;
  entries.push_back(SetEntry("r", "v1:a"));
  ASSERT_TRUE(client_->MutateRows(table_, std::move(entries)).ok());
  auto miss = set_if("v1", "x");  // a prefix is not the value: the pattern is anchored
  ASSERT_TRUE(miss.ok()) << miss.status().ToString();
  EXPECT_FALSE(*miss);
  auto hit = set_if("v1:a", "v2");
  ASSERT_TRUE(hit.ok()) << hit.status().ToString();
  EXPECT_TRUE(*hit);
  std::vector<Row> rows = ReadAll();
  ASSERT_EQ(rows.size(), 1u);
  EXPECT_EQ(rows[0].Find("f", "c")->value, "v2");
}

TEST(BigtableResume, TheRowSetLeftAfterABrokenStreamStartsPastTheLastRowRead) {
  v2::RowSet rows;
  for (const char* key : {"a", "c", "e"}) rows.add_row_keys(key);
  auto* before = rows.add_row_ranges();  // wholly read
  before->set_start_key_closed("a");
  before->set_end_key_open("c");
  auto* across = rows.add_row_ranges();  // read up to "c"
  across->set_start_key_closed("b");
  across->set_end_key_closed("m");
  auto* after = rows.add_row_ranges();  // not reached
  after->set_start_key_open("x");
  v2::RowSet left = RemainingRows(rows, "c");
  ASSERT_EQ(left.row_keys_size(), 1);
  EXPECT_EQ(left.row_keys(0), "e");
  ASSERT_EQ(left.row_ranges_size(), 2);
  EXPECT_EQ(left.row_ranges(0).start_key_open(), "c");
  EXPECT_EQ(left.row_ranges(0).end_key_closed(), "m");
  EXPECT_EQ(left.row_ranges(1).start_key_open(), "x");
  EXPECT_FALSE(left.row_ranges(1).has_end_key_open() || left.row_ranges(1).has_end_key_closed());
  v2::RowSet nothing = RemainingRows(rows, "z");
  EXPECT_EQ(nothing.row_keys_size() + nothing.row_ranges_size(), 1) << "only the open-ended range is left";
}

TEST(BigtableCodec, IntegersAreEightBytesBigEndian) {
  EXPECT_EQ(EncodeInt64(1), std::string("\0\0\0\0\0\0\0\1", 8));
  for (int64_t value : {int64_t{0}, int64_t{-1}, int64_t{1} << 40, INT64_MIN, INT64_MAX}) {
    auto decoded = DecodeInt64(EncodeInt64(value));
    ASSERT_TRUE(decoded.ok());
    EXPECT_EQ(*decoded, value);
  }
  EXPECT_EQ(DecodeInt64("abc").status().code(), StatusCode::kCorruption);
  EXPECT_EQ(ExactRegex("a:1"), "^a\\x3a1$");
}

}  // namespace
}  // namespace aquifer::drivers::bigtable
