// redshift_bench: the Redshift warehouse driver's ingest on PostgreSQL (no
// Redshift server runs here, so its multi-row INSERT fallback) next to raw
// writes of the same rows on the same server, in the same run. Figures are
// printed, never asserted.
//
// Each batch is 1000 records of ~100 B Avro with one record group, as the
// worker passes one queued message. Per batch, in rotating order so load on a
// shared machine hits every workload alike:
//   driver          WarehouseService::WriteToWarehouse of the `redshift` driver
//                   (Avro → row texts, the applied id, multi-row INSERTs)
//   raw INSERT      the very INSERT statement and parameters the driver sends
//                   (built before the clock starts), in one transaction
//   raw COPY        COPY (text) of the same rows into a plain table
//   s3 PUT          (with AQUIFER_TEST_S3: moto) the PUT of the batch's COPY
//                   staging file, what the COPY path adds before its COPY
// Every commit is durable (synchronous_commit on; the server's fsync as
// scripts/peers/postgres sets it).
//
// The loop runs until the slowest workload has spent `seconds` writing.
//
// Usage: redshift_bench [seconds=10]
// AQUIFER_TEST_POSTGRES: the server; AQUIFER_TEST_S3: optional (scripts/bench.sh starts both).

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <memory>
#include <optional>
#include <random>
#include <string>
#include <vector>

#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include "aquifer/base/text.h"
#include "aquifer/base/uuid.h"
#include "aquifer/driver/warehouse_service.h"
#include "aquifer/drivers/postgres/pg.h"
#include "aquifer/drivers/redshift/dialect.h"
#include "aquifer/drivers/redshift/s3.h"
#include "aquifer/drivers/redshift/warehouse.h"
#include "aquifer/keys/tuple.h"
#include "aquifer/schema/codec.h"
#include "aquifer/schema/schema.h"
#include "bench_util.h"

namespace {

using aquifer::bench::Die;
using aquifer::bench::Must;

namespace pg = aquifer::drivers::postgres;
namespace rs = aquifer::drivers::redshift;
using Clock = std::chrono::steady_clock;
using aquifer::driver::Record;
using aquifer::driver::RecordGroup;

constexpr int kBatchSize = 1000;

double Seconds(Clock::duration d) { return std::chrono::duration<double>(d).count(); }

// Timed batches of kBatchSize records, printed with names padded to 14 columns.
struct Workload : aquifer::bench::BatchWorkload {
  explicit Workload(std::string workload_name) : BatchWorkload(std::move(workload_name), kBatchSize, 14) {}
};

struct Batch {
  std::vector<Record> records;
  RecordGroup group;
  std::vector<std::vector<std::optional<std::string>>> rows;  // the driver's row texts
  std::string raw_copy;    // COPY text of (id, n, payload, __key, __timestamp)
  std::string json_lines;  // the COPY path's staging file
  size_t avro_bytes = 0;
};

class Generator {
 public:
  Generator() {
    schema_ = Must(aquifer::schema::Schema::Parse(
                       R"({"type":"record","name":"Row","fields":[{"name":"id","type":"string"},)"
                       R"({"name":"n","type":"long"},{"name":"payload","type":"string"}]})",
                       {"id"}),
                   "schema");
  }
  const aquifer::schema::SchemaPtr& schema() const { return schema_; }

  Batch Next() {
    static const std::string alphabet = "abcdefghijklmnopqrstuvwxyz0123456789";
    Batch batch;
    batch.group.id = std::string(aquifer::Uuid::Random().AsBytes());
    batch.group.records = kBatchSize;
    for (int row = 0; row < kBatchSize; ++row, ++next_) {
      std::string payload(80, 'x');
      for (char& c : payload) c = alphabet[rng_() % alphabet.size()];
      std::string id = fmt::format("user-{:010d}", next_);
      auto n = static_cast<int64_t>(rng_() % 1'000'000);
      aquifer::schema::Value value;
      auto& fields = value.v.emplace<aquifer::schema::Value::kRecordIndex>();
      fields.resize(3);
      fields[0].v = id;
      fields[1].v = n;
      fields[2].v = payload;
      Record record;
      record.timestamp_ms = 1'700'000'000'000 + next_;
      Must(aquifer::schema::EncodeAvro(*schema_, value, &record.avro), "encode");
      record.key = Must(aquifer::keys::EncodeKey(*schema_, value), "key");
      batch.avro_bytes += record.avro.size();
      auto json = nlohmann::json::parse(Must(aquifer::schema::AvroToJson(*schema_, record.avro), "json"));
      auto texts = Must(rs::RowValues(*schema_, json, record.key, record.timestamp_ms), "row");
      batch.raw_copy += fmt::format("{}\t{}\t{}\t\\\\x{}\t{}\n", id, n, payload, *texts[3], *texts[4]);
      batch.json_lines += rs::JsonLine(*schema_, texts);
      batch.rows.push_back(std::move(texts));
      batch.records.push_back(std::move(record));
    }
    return batch;
  }

 private:
  aquifer::schema::SchemaPtr schema_;
  std::mt19937_64 rng_{1};
  int64_t next_ = 0;
};

std::string Ratio(double a, double b) { return b > 0 ? fmt::format("{:.0f}%", 100.0 * a / b) : "-"; }

}  // namespace

int main(int argc, char** argv) {
  const double seconds = argc > 1 ? std::atof(argv[1]) : 10.0;
  if (seconds <= 0) Die("usage: redshift_bench [seconds=10]");
  const char* url = std::getenv("AQUIFER_TEST_POSTGRES");
  if (url == nullptr || *url == '\0') {
    Die("AQUIFER_TEST_POSTGRES is not set: `make bench` starts a server (scripts/peers/postgres); "
        "by hand: eval \"$(bash scripts/peers/postgres start)\"");
  }
  const char* s3_endpoint = std::getenv("AQUIFER_TEST_S3");
  const std::string schema_name = "bench_rs_" + aquifer::Uuid::Random().Hex().substr(0, 8);
  const std::string schema = pg::QuoteIdent(schema_name);

  auto admin = Must(pg::Connection::Open(url), "connecting");
  auto settings = Must(admin->Exec("SELECT current_setting('server_version'), current_setting('fsync')"), "settings");
  fmt::print("redshift_bench: the redshift driver on PostgreSQL {} (fsync={}): its multi-row INSERT fallback; "
             "schema {}\n",
             settings.Bytes(0, 0), settings.Bytes(0, 1), schema_name);
  fmt::print("batches of {} records of ~100 B Avro, one record group each; until the slowest workload spent {:.0f} s\n", kBatchSize,
             seconds);

  Generator generator;
  aquifer::driver::InstanceInfo instance;
  instance.instance_id = aquifer::Uuid::Random();
  instance.project = "bench";
  instance.table = "rows";
  instance.schema = generator.schema();
  rs::WarehouseOptions options;
  options.connection = pg::ConnectionOptions{url, schema_name, 8};
  auto warehouse = Must(rs::MakeWarehouseService(options, nullptr), "warehouse service");
  Must(warehouse->RegisterInstance(instance), "registering");
  Must(admin->ExecScript(fmt::format(
           "CREATE TABLE {0}.raw_insert (id varchar(65535) NOT NULL, n bigint NOT NULL, payload varchar(65535) NOT NULL, "
           "  __key bytea NOT NULL, __timestamp timestamptz NOT NULL);"
           "CREATE TABLE {0}.raw_copy (LIKE {0}.raw_insert)",
           schema)),
       "creating the raw tables");
  auto raw = Must(pg::Connection::Open(url), "connecting the raw writer");
  Must(raw->ExecScript("SET synchronous_commit = on"), "synchronous_commit");
  const std::string insert_sql =
      rs::InsertSql(schema + ".raw_insert", *generator.schema(), kBatchSize, rs::Server::kPostgres);
  const std::string copy_sql = fmt::format("COPY {}.raw_copy (id, n, payload, __key, __timestamp) FROM STDIN", schema);
  std::optional<rs::S3Client> s3;
  if (s3_endpoint != nullptr && *s3_endpoint != '\0') {
    rs::S3Options s3_options;
    s3_options.endpoint = s3_endpoint;
    s3_options.bucket = "bench-" + aquifer::Uuid::Random().Hex().substr(0, 12);
    s3_options.access_key_id = s3_options.secret_access_key = "bench";
    s3.emplace(s3_options);
    Must(s3->CreateBucket(), "creating the bucket");
  }

  Workload driver("driver"), raw_insert("raw INSERT"), raw_copy("raw COPY"), s3_put("s3 PUT (moto)");
  std::vector<Workload*> workloads = {&driver, &raw_insert, &raw_copy};
  if (s3) workloads.push_back(&s3_put);
  const auto start = Clock::now();
  for (int iteration = 0;; ++iteration) {
    // Until the slowest workload has spent `seconds`: every workload writes the same batches.
    double most = 0;
    for (const Workload* w : workloads) most = std::max(most, w->seconds);
    if (most >= seconds) break;
    Batch batch = generator.Next();
    pg::Params params;
    for (const auto& row : batch.rows) {
      for (const auto& value : row) {
        if (value) params.Untyped(*value); else params.Null(0);
      }
    }
    for (size_t turn = 0; turn < workloads.size(); ++turn) {
      Workload* w = workloads[(turn + iteration) % workloads.size()];
      auto t0 = Clock::now();
      if (w == &driver) {
        Must(warehouse->WriteToWarehouse(instance, batch.records, std::span(&batch.group, 1)), "driver write");
      } else if (w == &raw_insert) {
        Must(raw->Begin(), "BEGIN");
        Must(raw->Exec(insert_sql, params).status(), "raw INSERT");
        Must(raw->Commit(), "COMMIT");
      } else if (w == &raw_copy) {
        auto rows = Must(raw->CopyIn(copy_sql, batch.raw_copy), "raw COPY");
        if (rows != kBatchSize) Die(fmt::format("raw COPY wrote {} rows", rows));
      } else {
        Must(s3->PutObject(fmt::format("b/{}.json", iteration), batch.json_lines), "s3 PUT");
      }
      w->Add(Clock::now() - t0, batch.avro_bytes);
    }
  }
  const double wall = Seconds(Clock::now() - start);
  const int64_t stored = Must(warehouse->CountStoredRows(instance), "counting");
  if (stored != static_cast<int64_t>(driver.records)) {
    Die(fmt::format("the warehouse holds {} rows, expected {}", stored, driver.records));
  }
  fmt::print("{:<14} {:>11} {:>7} {:>8} {:>8} {:>8} {:>8} {:>7}\n", "workload", "records/s", "MB/s", "seconds",
             "p50 ms", "p99 ms", "max ms", "ratio");
  raw_copy.Print("");
  raw_insert.Print(Ratio(raw_insert.rate(), raw_copy.rate()));
  driver.Print(Ratio(driver.rate(), raw_insert.rate()));
  if (s3) s3_put.Print("");
  fmt::print("(MB/s counts Avro bytes; ratios: raw INSERT vs raw COPY, driver vs raw INSERT; {:.0f} s wall)\n", wall);
  warehouse.reset();
  Must(admin->ExecScript(fmt::format("DROP SCHEMA {} CASCADE", schema)), "dropping the bench schema");
  return 0;
}
