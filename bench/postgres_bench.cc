// postgres_bench: the Postgres LookupService and WarehouseService write paths
// against a raw COPY of the same rows into a plain table on the same server, in
// the same run (issue 9 item 7). Figures are printed, never asserted.
//
// Each batch is 1000 records of ~100 B Avro (fresh keys, rising timestamps)
// with one record group, as the worker passes one queued message. Per batch,
// in alternating order so load on a shared machine hits every workload alike:
//   lookup/driver     LookupService::WriteRecords (log + index + applied id)
//   lookup/raw        COPY ... (FORMAT binary) of the same (ts, key, avro) rows
//                     into a plain table (no index), one COPY = one transaction
//   warehouse/driver  WarehouseService::WriteToWarehouse (+ applied id)
//   warehouse/raw     COPY (text) of the very lines the driver sends, into a
//                     plain table with the warehouse table's columns
// The raw COPY data is built before its clock starts; the drivers get the
// Avro records (what the worker hands them). Every commit is durable
// (synchronous_commit on; the server's fsync as scripts/peers/postgres sets it).
// The loop runs until every workload has spent `seconds` writing.
//
// Usage: postgres_bench [seconds=30] [all|lookup|warehouse]
// AQUIFER_TEST_POSTGRES: the server (scripts/bench.sh starts one).

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <memory>
#include <random>
#include <string>
#include <vector>

#include <fmt/format.h>

#include "aquifer/base/text.h"
#include "aquifer/base/uuid.h"
#include "aquifer/driver/lookup_service.h"
#include "aquifer/driver/warehouse_service.h"
#include "aquifer/drivers/postgres/lookup_service.h"
#include "aquifer/drivers/postgres/pg.h"
#include "aquifer/drivers/postgres/warehouse.h"
#include "aquifer/keys/tuple.h"
#include "aquifer/schema/codec.h"
#include "aquifer/schema/schema.h"
#include "bench_util.h"

namespace {

using aquifer::bench::Die;
using aquifer::bench::Must;

namespace pg = aquifer::drivers::postgres;
using Clock = std::chrono::steady_clock;
using aquifer::driver::Record;
using aquifer::driver::RecordGroup;

constexpr int kBatchSize = 1000;

double Seconds(Clock::duration d) { return std::chrono::duration<double>(d).count(); }

// Timed batches of kBatchSize records, printed with names padded to 18 columns.
struct Workload : aquifer::bench::BatchWorkload {
  explicit Workload(std::string workload_name) : BatchWorkload(std::move(workload_name), kBatchSize, 18) {}
};

// Binary COPY: a header, then per row a field count and length-prefixed fields.
void CopyBinaryHeader(std::string* out) {
  out->append("PGCOPY\n\377\r\n\0", 11);
  out->append(8, '\0');  // flags, header extension length
}
void PutU16(std::string* out, uint16_t v) {
  out->push_back(static_cast<char>(v >> 8));
  out->push_back(static_cast<char>(v));
}
void PutU32(std::string* out, uint32_t v) {
  for (int shift = 24; shift >= 0; shift -= 8) out->push_back(static_cast<char>(v >> shift));
}
void PutField(std::string* out, std::string_view bytes) {
  PutU32(out, static_cast<uint32_t>(bytes.size()));
  out->append(bytes);
}
void PutInt8Field(std::string* out, int64_t v) {
  PutU32(out, 8);
  aquifer::PutBigEndian64(out, static_cast<uint64_t>(v));
}

// COPY text of one timestamp, as the warehouse driver renders it (UTC).
std::string TimestampText(int64_t ms) {
  using namespace std::chrono;
  sys_time<milliseconds> tp{milliseconds(ms)};
  auto day = floor<days>(tp);
  year_month_day ymd{day};
  hh_mm_ss<milliseconds> time{tp - day};
  return fmt::format("{:04}-{:02}-{:02} {:02}:{:02}:{:02}.{:03}+00", static_cast<int>(ymd.year()),
                     static_cast<unsigned>(ymd.month()), static_cast<unsigned>(ymd.day()), time.hours().count(),
                     time.minutes().count(), time.seconds().count(), time.subseconds().count());
}

struct Batch {
  std::vector<Record> records;
  RecordGroup group;
  std::string raw_lookup;     // binary COPY of (ts, key, avro)
  std::string raw_warehouse;  // COPY text of (id, n, payload, __key, __timestamp)
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
    batch.records.reserve(kBatchSize);
    batch.group.id = std::string(aquifer::Uuid::Random().AsBytes());
    batch.group.records = kBatchSize;
    CopyBinaryHeader(&batch.raw_lookup);
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

      PutU16(&batch.raw_lookup, 3);
      PutInt8Field(&batch.raw_lookup, record.timestamp_ms);
      PutField(&batch.raw_lookup, record.key);
      PutField(&batch.raw_lookup, record.avro);

      const std::string key_hex = aquifer::HexEncode(record.key);
      batch.raw_warehouse += fmt::format("{}\t{}\t{}\t\\\\x{}\t{}\n", id, n, payload, key_hex,
                                         TimestampText(record.timestamp_ms));
      batch.records.push_back(std::move(record));
    }
    PutU16(&batch.raw_lookup, 0xFFFF);
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
  const double seconds = argc > 1 ? std::atof(argv[1]) : 30.0;
  const std::string which = argc > 2 ? argv[2] : "all";
  const bool run_lookup = which == "all" || which == "lookup";
  const bool run_warehouse = which == "all" || which == "warehouse";
  if (seconds <= 0 || (!run_lookup && !run_warehouse)) Die("usage: postgres_bench [seconds=30] [all|lookup|warehouse]");
  const char* url = std::getenv("AQUIFER_TEST_POSTGRES");
  if (url == nullptr || *url == '\0') {
    Die("AQUIFER_TEST_POSTGRES is not set: `make bench` starts a server (scripts/peers/postgres); "
        "by hand: eval \"$(bash scripts/peers/postgres start)\"");
  }
  const std::string schema_name = "bench_" + aquifer::Uuid::Random().Hex().substr(0, 8);
  const std::string schema = pg::QuoteIdent(schema_name);

  auto admin = Must(pg::Connection::Open(url), "connecting");
  auto settings = Must(admin->Exec("SELECT current_setting('server_version'), current_setting('fsync'), "
                                   "current_setting('synchronous_commit'), current_setting('shared_buffers')"),
                       "reading settings");
  fmt::print("postgres_bench: PostgreSQL {} (fsync={}, synchronous_commit={}, shared_buffers={}), schema {}\n",
             settings.Bytes(0, 0), settings.Bytes(0, 1), settings.Bytes(0, 2), settings.Bytes(0, 3), schema_name);
  fmt::print("batches of {} records of ~100 B Avro, one record group each; >= {:.0f} s per workload\n", kBatchSize,
             seconds);

  pg::ConnectionOptions connection{url, schema_name, 8};
  Generator generator;
  aquifer::driver::InstanceInfo instance;
  instance.instance_id = aquifer::Uuid::Random();
  instance.project = "bench";
  instance.table = "rows";
  instance.schema = generator.schema();

  std::shared_ptr<aquifer::driver::LookupService> lookup;
  std::shared_ptr<aquifer::driver::WarehouseService> warehouse;
  if (run_lookup) {
    pg::LookupOptions options;
    options.connection = connection;
    lookup = Must(pg::MakeLookupService(options, nullptr), "lookup service");
    Must(lookup->RegisterInstance(instance), "registering with the lookup service");
  }
  if (run_warehouse) {
    pg::WarehouseOptions options;
    options.connection = connection;
    warehouse = Must(pg::MakeWarehouseService(options, nullptr), "warehouse service");
    Must(warehouse->RegisterInstance(instance), "registering with the warehouse");
  }
  Must(admin->ExecScript(fmt::format(
           "CREATE SCHEMA IF NOT EXISTS {0};"
           "CREATE TABLE {0}.raw_lookup (ts bigint NOT NULL, key bytea NOT NULL, avro bytea NOT NULL);"
           "CREATE TABLE {0}.raw_warehouse (id text NOT NULL, n bigint NOT NULL, payload text NOT NULL, "
           "  __key bytea NOT NULL, __timestamp timestamp(3) with time zone NOT NULL)",
           schema)),
       "creating the raw tables");
  auto raw = Must(pg::Connection::Open(url), "connecting the raw writer");
  Must(raw->ExecScript("SET synchronous_commit = on"), "synchronous_commit");
  const std::string raw_lookup_copy = fmt::format("COPY {}.raw_lookup (ts, key, avro) FROM STDIN (FORMAT binary)", schema);
  const std::string raw_warehouse_copy =
      fmt::format("COPY {}.raw_warehouse (id, n, payload, __key, __timestamp) FROM STDIN", schema);

  Workload lookup_driver("lookup/driver"), lookup_raw("lookup/raw COPY");
  Workload warehouse_driver("warehouse/driver"), warehouse_raw("warehouse/raw COPY");
  const auto start = Clock::now();
  for (int iteration = 0;; ++iteration) {
    double least = 1e300;
    if (run_lookup) least = std::min({least, lookup_driver.seconds, lookup_raw.seconds});
    if (run_warehouse) least = std::min({least, warehouse_driver.seconds, warehouse_raw.seconds});
    if (least >= seconds) break;
    Batch batch = generator.Next();
    const bool driver_first = iteration % 2 == 0;
    for (int turn = 0; turn < 2; ++turn) {
      const bool driver_turn = (turn == 0) == driver_first;
      if (run_lookup) {
        auto t0 = Clock::now();
        if (driver_turn) {
          Must(lookup->WriteRecords(instance, batch.records, std::span(&batch.group, 1)), "lookup write");
          lookup_driver.Add(Clock::now() - t0, batch.avro_bytes);
        } else {
          auto rows = Must(raw->CopyIn(raw_lookup_copy, batch.raw_lookup), "raw lookup COPY");
          if (rows != kBatchSize) Die(fmt::format("raw lookup COPY wrote {} rows", rows));
          lookup_raw.Add(Clock::now() - t0, batch.avro_bytes);
        }
      }
      if (run_warehouse) {
        auto t0 = Clock::now();
        if (driver_turn) {
          Must(warehouse->WriteToWarehouse(instance, batch.records, std::span(&batch.group, 1)), "warehouse write");
          warehouse_driver.Add(Clock::now() - t0, batch.avro_bytes);
        } else {
          auto rows = Must(raw->CopyIn(raw_warehouse_copy, batch.raw_warehouse), "raw warehouse COPY");
          if (rows != kBatchSize) Die(fmt::format("raw warehouse COPY wrote {} rows", rows));
          warehouse_raw.Add(Clock::now() - t0, batch.avro_bytes);
        }
      }
    }
  }
  const double wall = Seconds(Clock::now() - start);

  // What the drivers wrote must be there: one index row per record, every warehouse row.
  if (run_lookup) {
    auto count = Must(admin->Exec(fmt::format("SELECT count(*) FROM {}.lookup_index", schema)), "counting");
    if (Must(count.Int(0, 0), "count") != static_cast<int64_t>(lookup_driver.records)) {
      Die(fmt::format("the index holds {} rows, expected {}", Must(count.Int(0, 0), "count"), lookup_driver.records));
    }
  }
  if (run_warehouse) {
    auto count = Must(admin->Exec(fmt::format("SELECT count(*) FROM {}", warehouse->TableName(instance))), "counting");
    if (Must(count.Int(0, 0), "count") != static_cast<int64_t>(warehouse_driver.records)) {
      Die(fmt::format("the warehouse holds {} rows, expected {}", Must(count.Int(0, 0), "count"),
                      warehouse_driver.records));
    }
  }

  fmt::print("{:<18} {:>11} {:>7} {:>8} {:>8} {:>8} {:>8} {:>7}\n", "workload", "records/s", "MB/s", "seconds",
             "p50 ms", "p99 ms", "max ms", "ratio");
  if (run_lookup) {
    lookup_raw.Print("");
    lookup_driver.Print(Ratio(lookup_driver.rate(), lookup_raw.rate()));
  }
  if (run_warehouse) {
    warehouse_raw.Print("");
    warehouse_driver.Print(Ratio(warehouse_driver.rate(), warehouse_raw.rate()));
  }
  fmt::print("(MB/s counts Avro bytes; {:.0f} s wall; goal: each driver >= 70% of its raw COPY)\n", wall);

  lookup.reset();
  warehouse.reset();
  Must(admin->ExecScript(fmt::format("DROP SCHEMA {} CASCADE", schema)), "dropping the bench schema");
  return 0;
}
