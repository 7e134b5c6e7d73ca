// The CellChunk state machine on hand-written chunk sequences (the cases of the official
// clients' ReadRows acceptance tests that the emulator never sends: split cells, reset_row,
// and the protocol violations a client must refuse).

#include "aquifer/drivers/bigtable/row_reader.h"

#include <gtest/gtest.h>

namespace aquifer::drivers::bigtable {
namespace {

using Chunk = google::bigtable::v2::ReadRowsResponse::CellChunk;

Chunk Start(std::string key, std::string family, std::string qualifier, int64_t ts, std::string value) {
  Chunk chunk;
  chunk.set_row_key(std::move(key));
  chunk.mutable_family_name()->set_value(std::move(family));
  chunk.mutable_qualifier()->set_value(std::move(qualifier));
  chunk.set_timestamp_micros(ts);
  chunk.set_value(std::move(value));
  return chunk;
}
Chunk ValueOnly(std::string value) {
  Chunk chunk;
  chunk.set_value(std::move(value));
  return chunk;
}
Chunk Commit(Chunk chunk) {
  chunk.set_commit_row(true);
  return chunk;
}
Chunk Reset() {
  Chunk chunk;
  chunk.set_reset_row(true);
  return chunk;
}

Status FeedAll(RowAssembler* assembler, const std::vector<Chunk>& chunks, std::vector<Row>* rows) {
  for (const Chunk& chunk : chunks) AQ_RETURN_IF_ERROR(assembler->Feed(chunk, rows));
  return assembler->Finish();
}

TEST(RowAssembler, AssemblesRowsWithSeveralFamiliesAndColumns) {
  Chunk second_column;
  second_column.mutable_qualifier()->set_value("q2");
  second_column.set_value("v2");
  Chunk other_family;
  other_family.mutable_family_name()->set_value("g");
  other_family.mutable_qualifier()->set_value("q3");
  other_family.set_value("v3");
  std::vector<Row> rows;
  RowAssembler assembler;
  ASSERT_TRUE(FeedAll(&assembler, {Start("r1", "f", "q1", 1000, "v1"), second_column, Commit(other_family),
                                   Commit(Start("r2", "f", "q1", 0, "w"))}, &rows).ok());
  ASSERT_EQ(rows.size(), 2u);
  EXPECT_EQ(rows[0].key, "r1");
  ASSERT_EQ(rows[0].cells.size(), 3u);
  EXPECT_EQ(rows[0].Find("f", "q1")->value, "v1");
  EXPECT_EQ(rows[0].Find("f", "q1")->timestamp_micros, 1000);
  EXPECT_EQ(rows[0].Find("f", "q2")->value, "v2");
  EXPECT_EQ(rows[0].Find("g", "q3")->value, "v3");
  EXPECT_EQ(rows[1].Find("f", "q1")->value, "w");
  EXPECT_EQ(assembler.last_key(), "r2");
}

TEST(RowAssembler, JoinsASplitCell) {
  Chunk first = Start("r", "f", "q", 5, "ab");
  first.set_value_size(6);
  Chunk middle = ValueOnly("cd");
  middle.set_value_size(6);
  std::vector<Row> rows;
  RowAssembler assembler;
  ASSERT_TRUE(FeedAll(&assembler, {first, middle, Commit(ValueOnly("ef"))}, &rows).ok());
  ASSERT_EQ(rows.size(), 1u);
  ASSERT_EQ(rows[0].cells.size(), 1u);
  EXPECT_EQ(rows[0].cells[0].value, "abcdef");
  EXPECT_EQ(rows[0].cells[0].timestamp_micros, 5);
}

TEST(RowAssembler, ResetRowDropsWhatArrivedOfTheRow) {
  Chunk split = Start("r", "f", "q", 0, "stale");
  split.set_value_size(10);
  std::vector<Row> rows;
  RowAssembler assembler;
  ASSERT_TRUE(FeedAll(&assembler, {Start("r", "f", "old", 0, "x"), split, Reset(), Commit(Start("r", "f", "q", 0, "fresh"))},
                      &rows).ok());
  ASSERT_EQ(rows.size(), 1u);
  ASSERT_EQ(rows[0].cells.size(), 1u);
  EXPECT_EQ(rows[0].cells[0].value, "fresh");
}

TEST(RowAssembler, RefusesChunksThatBreakTheProtocol) {
  auto fails = [](const std::vector<Chunk>& chunks) {
    std::vector<Row> rows;
    RowAssembler assembler;
    Status status = FeedAll(&assembler, chunks, &rows);
    return status.code() == StatusCode::kInternal;
  };
  EXPECT_TRUE(fails({Reset()})) << "reset outside a row";
  EXPECT_TRUE(fails({Start("r", "f", "q", 0, "v")})) << "no commit before the end";
  EXPECT_TRUE(fails({Commit(Start("b", "f", "q", 0, "")), Commit(Start("a", "f", "q", 0, ""))})) << "keys out of order";
  EXPECT_TRUE(fails({Commit(Start("a", "f", "q", 0, "")), Commit(Start("a", "f", "q", 0, ""))})) << "a key twice";
  Chunk no_family;
  no_family.set_row_key("r");
  no_family.set_commit_row(true);
  EXPECT_TRUE(fails({no_family})) << "a new row without family and qualifier";
  Chunk split = Start("r", "f", "q", 0, "a");
  split.set_value_size(3);
  split.set_commit_row(true);
  EXPECT_TRUE(fails({split})) << "commit inside a split cell";
  Chunk other_key = Start("s", "f", "q", 0, "");
  EXPECT_TRUE(fails({Start("r", "f", "q", 0, ""), Commit(other_key)})) << "another key before commit";
  Chunk family_only;
  family_only.mutable_family_name()->set_value("g");
  EXPECT_TRUE(fails({Start("r", "f", "q", 0, ""), Commit(family_only)})) << "a family without a qualifier";
  Chunk reset_with_data = Reset();
  reset_with_data.set_value("x");
  EXPECT_TRUE(fails({Start("r", "f", "q", 0, ""), reset_with_data})) << "reset with data";
}

}  // namespace
}  // namespace aquifer::drivers::bigtable
