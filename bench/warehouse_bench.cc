// DuckDB warehouse ingest: WriteToWarehouse (Avro decode + data chunks +
// appender, default config) against a raw DuckDB appender filling data chunks
// with the same rows from plain C++ values, in the same run. Batches of 1000
// records of ~100 bytes. Prints figures; asserts nothing (goal: ratio >= 80%).

#include <duckdb.h>

#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <string>
#include <vector>

#include <fmt/format.h>

#include "aquifer/drivers/duckdb/warehouse.h"
#include "aquifer/keys/tuple.h"
#include "aquifer/schema/codec.h"
#include "bench_util.h"

namespace {

using aquifer::bench::Die;

using namespace aquifer;

constexpr const char* kSchema = R"json({"type": "record", "name": "Ev", "fields": [
  {"name": "id", "type": "long"},
  {"name": "user", "type": "string"},
  {"name": "amount", "type": "double"},
  {"name": "note", "type": "string"},
  {"name": "at", "type": {"type": "long", "logicalType": "timestamp-millis"}}]})json";

struct Row {
  int64_t id;
  std::string user;
  double amount;
  std::string note;
  int64_t at;
  std::string key;
  int64_t timestamp_ms;
};

double Seconds(std::chrono::steady_clock::time_point start) {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
}

void Exec(duckdb_connection conn, const std::string& sql) {
  duckdb_result result;
  if (duckdb_query(conn, sql.c_str(), &result) == DuckDBError) Die(duckdb_result_error(&result));
  duckdb_destroy_result(&result);
}

}  // namespace

int main() {
  const char* env_dir = std::getenv("AQUIFER_BENCH_DIR");
  const std::string dir = env_dir != nullptr ? env_dir : (std::filesystem::temp_directory_path() / "aquifer-wh-bench").string();
  std::filesystem::remove_all(dir);
  std::filesystem::create_directories(dir);
  constexpr int kBatch = 1000;
  constexpr int kBatches = 200;

  auto schema = schema::Schema::Parse(kSchema, {"id"});
  if (!schema.ok()) Die(schema.status().ToString());

  // The same rows for both sides.
  std::vector<Row> rows;
  std::vector<driver::Record> records;
  size_t avro_bytes = 0;
  const int64_t now = 1'700'000'000'000;
  for (int64_t i = 0; i < int64_t{kBatch} * kBatches; ++i) {
    Row row{i, fmt::format("user{:04}", i % 1000), static_cast<double>(i) * 0.5,
            fmt::format("note {:08} lorem ipsum dolor sit amet consectetur adipiscing elit sed", i), now + i, "", now + i};
    schema::Value value;
    auto& fields = value.v.emplace<schema::Value::kRecordIndex>();
    fields.push_back({row.id});
    fields.push_back({row.user});
    fields.push_back({row.amount});
    fields.push_back({row.note});
    fields.push_back({row.at});
    driver::Record record;
    if (!schema::EncodeAvro(**schema, value, &record.avro).ok()) Die("encode");
    auto key = keys::EncodeKey(**schema, value);
    if (!key.ok()) Die(key.status().ToString());
    record.key = row.key = *key;
    record.timestamp_ms = row.timestamp_ms;
    avro_bytes += record.avro.size();
    records.push_back(std::move(record));
    rows.push_back(std::move(row));
  }

  // Driver.
  driver::DriverContext context;
  context.data_dir = dir + "/driver";
  auto warehouse = drivers::duckdb::OpenWarehouse({}, context);
  if (!warehouse.ok()) Die(warehouse.status().ToString());
  driver::InstanceInfo instance;
  instance.instance_id = Uuid::Random();
  instance.schema = *schema;
  if (!(*warehouse)->RegisterInstance(instance).ok()) Die("register");

  // Raw appender on its own database file, same columns.
  std::filesystem::create_directories(dir + "/raw");
  duckdb_database db;
  duckdb_connection conn;
  if (duckdb_open((dir + "/raw/raw.duckdb").c_str(), &db) == DuckDBError) Die("open raw");
  duckdb_connect(db, &conn);
  Exec(conn, "CREATE TABLE t (id BIGINT NOT NULL, \"user\" VARCHAR NOT NULL, amount DOUBLE NOT NULL, "
             "note VARCHAR NOT NULL, \"at\" TIMESTAMP_MS NOT NULL, __key BLOB NOT NULL, __timestamp TIMESTAMP NOT NULL)");

  auto run_driver = [&](int first, int count) {
    for (int b = first; b < first + count; ++b) {
      std::span<const driver::Record> batch(records.data() + static_cast<size_t>(b) * kBatch, kBatch);
      if (Status s = (*warehouse)->WriteToWarehouse(instance, batch, {}); !s.ok()) Die(s.ToString());
    }
  };
  auto run_raw = [&](int first, int count) {
    for (int b = first; b < first + count; ++b) {
      duckdb_appender appender;
      if (duckdb_appender_create(conn, nullptr, "t", &appender) == DuckDBError) Die("appender");
      duckdb_logical_type types[7];
      for (idx_t c = 0; c < 7; ++c) types[c] = duckdb_appender_column_type(appender, c);
      duckdb_data_chunk chunk = duckdb_create_data_chunk(types, 7);
      duckdb_vector v[7];
      for (idx_t c = 0; c < 7; ++c) v[c] = duckdb_data_chunk_get_vector(chunk, c);
      for (int r = 0; r < kBatch; ++r) {
        const Row& row = rows[static_cast<size_t>(b) * kBatch + r];
        static_cast<int64_t*>(duckdb_vector_get_data(v[0]))[r] = row.id;
        duckdb_vector_assign_string_element_len(v[1], r, row.user.data(), row.user.size());
        static_cast<double*>(duckdb_vector_get_data(v[2]))[r] = row.amount;
        duckdb_vector_assign_string_element_len(v[3], r, row.note.data(), row.note.size());
        static_cast<int64_t*>(duckdb_vector_get_data(v[4]))[r] = row.at;
        duckdb_vector_assign_string_element_len(v[5], r, row.key.data(), row.key.size());
        static_cast<int64_t*>(duckdb_vector_get_data(v[6]))[r] = row.timestamp_ms * 1000;
      }
      duckdb_data_chunk_set_size(chunk, kBatch);
      if (duckdb_append_data_chunk(appender, chunk) == DuckDBError) Die(duckdb_appender_error(appender));
      if (duckdb_appender_close(appender) == DuckDBError) Die(duckdb_appender_error(appender));
      duckdb_destroy_data_chunk(&chunk);
      for (auto& type : types) duckdb_destroy_logical_type(&type);
      duckdb_appender_destroy(&appender);
    }
  };

  // Interleave rounds so both sides see the same machine conditions.
  constexpr int kRounds = 4;
  const int per_round = kBatches / kRounds;
  double driver_s = 0, raw_s = 0;
  for (int round = 0; round < kRounds; ++round) {
    auto start = std::chrono::steady_clock::now();
    run_raw(round * per_round, per_round);
    raw_s += Seconds(start);
    start = std::chrono::steady_clock::now();
    run_driver(round * per_round, per_round);
    driver_s += Seconds(start);
  }
  const double n = static_cast<double>(kBatch) * kBatches;
  std::printf("records: %d batches x %d, avg Avro record %.0f bytes\n", kBatches, kBatch, avro_bytes / n);
  std::printf("%-44s %14s %10s\n", "method", "records/s", "MB/s(avro)");
  std::printf("%-44s %14.0f %10.1f\n", "raw DuckDB appender (data chunks)", n / raw_s, avro_bytes / raw_s / 1e6);
  std::printf("%-44s %14.0f %10.1f\n", "DuckDB WriteToWarehouse (decode+chunks+txn)", n / driver_s,
              avro_bytes / driver_s / 1e6);
  std::printf("ratio driver/raw: %.0f%% (goal >= 80%%)\n", 100.0 * raw_s / driver_s);
  duckdb_disconnect(&conn);
  duckdb_close(&db);
  warehouse->reset();
  std::filesystem::remove_all(dir);
  return 0;
}
