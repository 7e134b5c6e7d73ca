#include "aquifer/drivers/duckdb/rows.h"

#include <gtest/gtest.h>

#include <string>
#include <vector>

#include "aquifer/drivers/duckdb/handles.h"
#include "aquifer/schema/codec.h"
#include "aquifer/schema/testing_schemas.h"

namespace aquifer::drivers::duckdb {
namespace {

// Every field set, nulls where a branch allows them (kFull), and the other
// branches (kOther).
const std::string kFull = schema::testing::RichRecordJson(R"("NaN")", R"("\u00e9\n")");
constexpr const char* kOther = R"json({
  "id": "o-2", "seq": -1, "small": 2147483647, "flag": false, "ratio": -0.0, "price": 1e300,
  "blob": "", "hash": "AAAAAA==", "color": "BLUE", "amount": "99999999999999999999999999999999.9999",
  "famount": "-0.01", "uid": "ffffffff-ffff-ffff-ffff-ffffffffffff", "ts": -5,
  "items": [], "tags": [], "other_hash": null, "first_item": null,
  "n_color": "RED", "n_amount": null, "n_famount": "1.00", "n_uid": "00000000-0000-0000-0000-000000000001",
  "n_ts": null, "n_long": 3, "n_int": null, "n_bool": null, "n_float": 2.5, "n_double": null, "n_string": null,
  "n_bytes": "/w==", "n_items": null, "n_matrix": null
})json";

class AvroRows : public ::testing::Test {
 protected:
  void SetUp() override {
    auto parsed = schema::Schema::Parse(schema::testing::kRichSchemaJson, {"id"});
    ASSERT_TRUE(parsed.ok()) << parsed.status().ToString();
    schema_ = *parsed;
    for (const std::string& json : {kFull, std::string(kOther)}) {
      auto value = schema::ParseJsonRecord(*schema_, json);
      ASSERT_TRUE(value.ok()) << value.status().ToString();
      std::string avro;
      ASSERT_TRUE(schema::EncodeAvro(*schema_, *value, &avro).ok());
      avros_.push_back(std::move(avro));
    }
    ASSERT_NE(duckdb_open(nullptr, db_.out()), DuckDBError);
    ASSERT_NE(duckdb_connect(db_.get(), conn_.out()), DuckDBError);
  }

  void Exec(const std::string& sql) {
    duckdb_result result;
    const bool failed = duckdb_query(conn_.get(), sql.c_str(), &result) == DuckDBError;
    EXPECT_FALSE(failed) << sql << ": " << duckdb_result_error(&result);
    duckdb_destroy_result(&result);
  }
  int64_t Count(const std::string& sql) {
    duckdb_result result;
    EXPECT_NE(duckdb_query(conn_.get(), sql.c_str(), &result), DuckDBError) << duckdb_result_error(&result);
    const int64_t n = duckdb_value_int64(&result, 0, 0);
    duckdb_destroy_result(&result);
    return n;
  }

  // Appends `avros` to `table` (created from the schema), through AppendAvroRow
  // or through DecodeAvro + FillCell.
  void Append(const std::string& table, bool direct) {
    Exec(CreateTableSql(table, *schema_));
    Appender appender;
    ASSERT_NE(duckdb_appender_create(conn_.get(), nullptr, table.c_str(), appender.out()), DuckDBError);
    const idx_t columns = duckdb_appender_column_count(appender.get());
    std::vector<LogicalType> owned;
    std::vector<duckdb_logical_type> types;
    for (idx_t c = 0; c < columns; ++c) {
      owned.emplace_back(duckdb_appender_column_type(appender.get(), c));
      types.push_back(owned.back().get());
    }
    DataChunk chunk(duckdb_create_data_chunk(types.data(), columns));
    std::vector<duckdb_vector> vectors(columns);
    for (idx_t c = 0; c < columns; ++c) vectors[c] = duckdb_data_chunk_get_vector(chunk.get(), c);
    const auto& fields = schema_->fields();
    for (idx_t row = 0; row < avros_.size(); ++row) {
      if (direct) {
        Status status = AppendAvroRow(schema_->root(), avros_[row], vectors.data(), row);
        ASSERT_TRUE(status.ok()) << status.ToString();
      } else {
        auto value = schema::DecodeAvro(*schema_, avros_[row]);
        ASSERT_TRUE(value.ok());
        const auto& record = std::get<schema::Value::kRecordIndex>(value->v);
        for (size_t f = 0; f < fields.size(); ++f) {
          ASSERT_TRUE(FillCell(vectors[f], *fields[f].type, row, record[f], fields[f].name).ok());
        }
      }
      duckdb_vector_assign_string_element_len(vectors[fields.size()], row, "k", 1);
      static_cast<int64_t*>(duckdb_vector_get_data(vectors[fields.size() + 1]))[row] = 0;
    }
    duckdb_data_chunk_set_size(chunk.get(), avros_.size());
    ASSERT_NE(duckdb_append_data_chunk(appender.get(), chunk.get()), DuckDBError)
        << duckdb_appender_error(appender.get());
    ASSERT_NE(duckdb_appender_close(appender.get()), DuckDBError) << duckdb_appender_error(appender.get());
  }

  schema::SchemaPtr schema_;
  std::vector<std::string> avros_;
  Database db_;
  Connection conn_;
};

// The direct decode stores exactly what decoding into Values and FillCell stores.
TEST_F(AvroRows, DirectDecodeStoresWhatTheValuePathStores) {
  Append("via_values", false);
  Append("direct", true);
  EXPECT_EQ(Count("SELECT count(*) FROM direct"), 2);
  EXPECT_EQ(Count("SELECT count(*) FROM (SELECT * FROM direct EXCEPT ALL SELECT * FROM via_values)"), 0);
  EXPECT_EQ(Count("SELECT count(*) FROM (SELECT * FROM via_values EXCEPT ALL SELECT * FROM direct)"), 0);
  EXPECT_EQ(Count("SELECT count(*) FROM direct WHERE n_matrix IS NULL AND first_item IS NULL AND "
                  "n_items IS NULL AND len(items) = 0"),
            1);
}

// Every truncation and every single-byte change of a valid datum is accepted or
// refused exactly as schema::DecodeAvro accepts or refuses it, with its message.
TEST_F(AvroRows, MalformedDataFailAsDecodeAvroFails) {
  std::vector<LogicalType> owned;
  std::vector<duckdb_logical_type> types;
  for (const auto& field : schema_->fields()) {
    duckdb_result result;
    const std::string sql = "SELECT NULL::" + ColumnType(*field.type);
    ASSERT_NE(duckdb_query(conn_.get(), sql.c_str(), &result), DuckDBError) << sql;
    owned.emplace_back(duckdb_column_logical_type(&result, 0));
    types.push_back(owned.back().get());
    duckdb_destroy_result(&result);
  }
  auto check = [&](const std::string& avro) {
    DataChunk chunk(duckdb_create_data_chunk(types.data(), types.size()));
    std::vector<duckdb_vector> vectors(types.size());
    for (idx_t c = 0; c < types.size(); ++c) vectors[c] = duckdb_data_chunk_get_vector(chunk.get(), c);
    Status direct = AppendAvroRow(schema_->root(), avro, vectors.data(), 0);
    auto decoded = schema::DecodeAvro(*schema_, avro);
    ASSERT_EQ(direct.ok(), decoded.ok()) << direct.ToString() << " vs " << decoded.status().ToString();
    if (!direct.ok()) {
      EXPECT_EQ(direct.code(), StatusCode::kCorruption);
      EXPECT_EQ(direct.ToString(), decoded.status().ToString());
    }
  };
  int failures = 0;
  for (const std::string& avro : avros_) {
    for (size_t size = 0; size < avro.size(); ++size) {
      check(avro.substr(0, size));
      ++failures;
    }
    check(avro + "x");  // trailing bytes
    for (size_t pos = 0; pos < avro.size(); ++pos) {
      for (int flip : {0x01, 0x80, 0xFF}) {
        std::string changed = avro;
        changed[pos] = static_cast<char>(changed[pos] ^ flip);
        check(changed);
      }
    }
  }
  EXPECT_GT(failures, 100);
}

}  // namespace
}  // namespace aquifer::drivers::duckdb
