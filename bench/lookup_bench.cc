// lookup_bench: the embedded (RocksDB) LookupService against raw RocksDB.
//
// Workloads, each in a fresh database under a temporary directory:
//   write/lookup   LookupService::WriteRecords, batches of 1000 records of ~100 B
//                  Avro, fresh keys (log append + index insert + sequence per batch)
//   write/raw      a raw RocksDB WriteBatch per 1000 records, with the same key
//                  and value sizes as the lookup log rows, same sync setting
//                  (one row per record: the baseline the goal is set against)
// The two write workloads alternate batch by batch (which goes first too), so
// load from other processes hits both alike; each is timed alone.
//   read/lookup    index point lookups: Query with an equality filter on the
//                  key, then ReadCursor with limit 1
//   read/raw       rocksdb::DB::Get of the same keys
// Writes run with sync=true (the driver's default: the queue acks after the
// write) and sync=false. The table prints records/s, MB/s (Avro bytes),
// per-batch latency p50/p99/max, and the lookup/raw ratio (goal >= 60%).
//
// Usage: lookup_bench [batches=200] [dir=$TMPDIR]

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <memory>
#include <random>
#include <string>
#include <utility>
#include <vector>

#include <fmt/format.h>
#include <rocksdb/db.h>
#include <rocksdb/options.h>
#include <rocksdb/write_batch.h>

#include "aquifer/base/uuid.h"
#include "aquifer/driver/lookup_service.h"
#include "aquifer/drivers/rocksdb/lookup_service.h"
#include "aquifer/keys/filter.h"
#include "aquifer/keys/tuple.h"
#include "aquifer/schema/codec.h"
#include "aquifer/schema/schema.h"
#include "bench_util.h"

namespace {

using aquifer::bench::Die;

using Clock = std::chrono::steady_clock;
using aquifer::driver::Record;

constexpr int kBatchSize = 1000;

double Seconds(Clock::duration d) { return std::chrono::duration<double>(d).count(); }

struct Figures {
  double records_per_s = 0, mb_per_s = 0, p50_ms = 0, p99_ms = 0, max_ms = 0;
};

Figures Summarise(std::vector<double> batch_ms, double total_s, size_t records, size_t bytes) {
  std::sort(batch_ms.begin(), batch_ms.end());
  Figures f;
  f.records_per_s = records / total_s;
  f.mb_per_s = bytes / total_s / 1e6;
  if (!batch_ms.empty()) {
    f.p50_ms = batch_ms[batch_ms.size() / 2];
    f.p99_ms = batch_ms[std::min(batch_ms.size() - 1, batch_ms.size() * 99 / 100)];
    f.max_ms = batch_ms.back();
  }
  return f;
}

void PrintRow(const std::string& name, const Figures& f, const std::string& ratio) {
  fmt::print("{:<22} {:>12.0f} {:>9.1f} {:>9.3f} {:>9.3f} {:>9.3f} {:>8}\n", name, f.records_per_s, f.mb_per_s,
             f.p50_ms, f.p99_ms, f.max_ms, ratio);
}

struct Data {
  aquifer::schema::SchemaPtr schema;
  std::vector<std::vector<Record>> batches;
  size_t avro_bytes = 0;
};

Data MakeData(int batch_count) {
  Data data;
  auto schema = aquifer::schema::Schema::Parse(
      R"({"type":"record","name":"Row","fields":[{"name":"id","type":"string"},)"
      R"({"name":"n","type":"long"},{"name":"payload","type":"string"}]})",
      {"id"});
  if (!schema.ok()) Die(schema.status().ToString());
  data.schema = *schema;
  std::mt19937_64 rng(1);
  const std::string alphabet = "abcdefghijklmnopqrstuvwxyz0123456789";
  for (int batch_idx = 0; batch_idx < batch_count; ++batch_idx) {
    std::vector<Record> batch;
    batch.reserve(kBatchSize);
    for (int row_idx = 0; row_idx < kBatchSize; ++row_idx) {
      std::string payload(80, 'x');
      for (char& c : payload) c = alphabet[rng() % alphabet.size()];
      std::string json = fmt::format(R"({{"id":"user-{:010d}","n":{},"payload":"{}"}})",
                                     batch_idx * kBatchSize + row_idx, rng() % 1000000, payload);
      auto value = aquifer::schema::ParseJsonRecord(*data.schema, json);
      if (!value.ok()) Die(value.status().ToString());
      Record record;
      record.timestamp_ms = 1'700'000'000'000 + batch_idx * kBatchSize + row_idx;
      if (!aquifer::schema::EncodeAvro(*data.schema, *value, &record.avro).ok()) Die("encode");
      auto key = aquifer::keys::EncodeKey(*data.schema, *value);
      if (!key.ok()) Die(key.status().ToString());
      record.key = *key;
      data.avro_bytes += record.avro.size();
      batch.push_back(std::move(record));
    }
    data.batches.push_back(std::move(batch));
  }
  return data;
}

// The raw baseline: per batch, the same puts a lookup log row makes, in one
// WriteBatch with the same sync setting: instance(16) ‖ offset(8) →
// timestamp(8) ‖ key length(4) ‖ key ‖ avro, keys built into reused buffers.
class RawWriter {
 public:
  RawWriter(const std::string& dir, bool sync) {
    rocksdb::Options options;
    options.create_if_missing = true;
    options.IncreaseParallelism(2);
    options.write_buffer_size = 64 << 20;
    auto status = rocksdb::DB::Open(options, dir, &db_);
    if (!status.ok()) Die(status.ToString());
    write_options_.sync = sync;
    prefix_ = std::string(aquifer::Uuid::Random().AsBytes());
  }
  ~RawWriter() { delete db_; }
  void Write(const std::vector<Record>& batch) {
    rocksdb::WriteBatch wb;
    for (const Record& record : batch) {
      key_ = prefix_;
      for (int shift = 56; shift >= 0; shift -= 8) key_.push_back(static_cast<char>(offset_ >> shift));
      ++offset_;
      value_.assign(12, '\0');
      value_ += record.key;
      value_ += record.avro;
      wb.Put(key_, value_);
    }
    auto status = db_->Write(write_options_, &wb);
    if (!status.ok()) Die(status.ToString());
  }
  rocksdb::DB* db() const { return db_; }

 private:
  rocksdb::DB* db_ = nullptr;
  rocksdb::WriteOptions write_options_;
  std::string prefix_, key_, value_;
  uint64_t offset_ = 0;
};

// Writes every batch to both, alternating which goes first, so load from other
// processes on the machine hits both sides alike. Returns {raw, lookup}.
std::pair<Figures, Figures> RunWrites(const Data& data, const std::filesystem::path& base, bool sync,
                                      std::shared_ptr<aquifer::driver::LookupService>* keep_service,
                                      aquifer::driver::InstanceInfo* instance,
                                      std::unique_ptr<RawWriter>* keep_raw) {
  const std::string tag = sync ? "sync" : "nosync";
  auto raw = std::make_unique<RawWriter>((base / ("raw-" + tag)).string(), sync);
  aquifer::drivers::rocksdb::LookupOptions options;
  options.path = (base / ("lookup-" + tag)).string();
  options.sync = sync;
  auto service = aquifer::drivers::rocksdb::MakeLookupService(options);
  if (!service.ok()) Die(service.status().ToString());
  instance->instance_id = aquifer::Uuid::Random();
  instance->schema = data.schema;
  std::vector<double> raw_ms, lookup_ms;
  Clock::duration raw_total{}, lookup_total{};
  auto run_raw = [&](const std::vector<Record>& batch) {
    auto start = Clock::now();
    raw->Write(batch);
    auto took = Clock::now() - start;
    raw_total += took;
    raw_ms.push_back(Seconds(took) * 1e3);
  };
  auto run_lookup = [&](const std::vector<Record>& batch) {
    auto start = Clock::now();
    auto status = (*service)->WriteRecords(*instance, batch, {});
    if (!status.ok()) Die(status.ToString());
    auto took = Clock::now() - start;
    lookup_total += took;
    lookup_ms.push_back(Seconds(took) * 1e3);
  };
  for (size_t batch_idx = 0; batch_idx < data.batches.size(); ++batch_idx) {
    if (batch_idx % 2 == 0) {
      run_raw(data.batches[batch_idx]);
      run_lookup(data.batches[batch_idx]);
    } else {
      run_lookup(data.batches[batch_idx]);
      run_raw(data.batches[batch_idx]);
    }
  }
  const size_t records = data.batches.size() * kBatchSize;
  *keep_service = *service;
  *keep_raw = std::move(raw);
  return {Summarise(raw_ms, Seconds(raw_total), records, data.avro_bytes),
          Summarise(lookup_ms, Seconds(lookup_total), records, data.avro_bytes)};
}

std::string Ratio(double a, double b) { return fmt::format("{:.0f}%", 100.0 * a / b); }

}  // namespace

int main(int argc, char** argv) {
  int batch_count = argc > 1 ? std::atoi(argv[1]) : 200;
  if (batch_count < 1) Die("batches must be positive");
  std::filesystem::path base = argc > 2 ? std::filesystem::path(argv[2]) : std::filesystem::temp_directory_path();
  base /= fmt::format("lookup_bench-{}", aquifer::Uuid::Random().Hex().substr(0, 8));
  std::filesystem::create_directories(base);

  Data data = MakeData(batch_count);
  fmt::print("lookup_bench: {} batches x {} records, {:.1f} B Avro/record avg, key {} B, dir {}\n", batch_count,
             kBatchSize, static_cast<double>(data.avro_bytes) / (batch_count * kBatchSize),
             data.batches[0][0].key.size(), base.string());
  fmt::print("{:<22} {:>12} {:>9} {:>9} {:>9} {:>9} {:>8}\n", "workload", "records/s", "MB/s", "p50 ms", "p99 ms",
             "max ms", "ratio");

  std::shared_ptr<aquifer::driver::LookupService> kept_service;
  aquifer::driver::InstanceInfo kept_instance;
  std::unique_ptr<RawWriter> kept_raw_writer;
  for (bool sync : {true, false}) {
    std::string tag = sync ? "sync" : "nosync";
    std::shared_ptr<aquifer::driver::LookupService> service;
    aquifer::driver::InstanceInfo instance;
    std::unique_ptr<RawWriter> raw_writer;
    auto [raw, lookup] = RunWrites(data, base, sync, &service, &instance, &raw_writer);
    PrintRow("write/raw " + tag, raw, "");
    PrintRow("write/lookup " + tag, lookup, Ratio(lookup.records_per_s, raw.records_per_s));
    if (!sync) {
      kept_service = service;
      kept_instance = instance;
      kept_raw_writer = std::move(raw_writer);
    }
  }
  rocksdb::DB* kept_raw = kept_raw_writer->db();

  // Point reads of random existing keys.
  const int reads = 20'000;
  std::mt19937_64 rng(2);
  std::vector<const Record*> picks;
  for (int read_idx = 0; read_idx < reads; ++read_idx) {
    picks.push_back(&data.batches[rng() % data.batches.size()][rng() % kBatchSize]);
  }
  auto start = Clock::now();
  aquifer::driver::ReadOptions read_options;
  read_options.limit = 1;
  for (const Record* record : picks) {
    auto decoded = aquifer::keys::DecodeTuple(record->key);
    if (!decoded.ok()) Die(decoded.status().ToString());
    const std::string& id = std::get<std::string>((*decoded)[0]);
    auto filter = aquifer::keys::ParseFilter(*data.schema, fmt::format(R"({{"id":"{}"}})", id));
    if (!filter.ok()) Die(filter.status().ToString());
    aquifer::driver::QueryRequest request;
    request.filter = *filter;
    auto cursors = kept_service->Query(kept_instance, request);
    if (!cursors.ok()) Die(cursors.status().ToString());
    auto page = kept_service->ReadCursor(kept_instance, cursors->replay, *filter, read_options);
    if (!page.ok() || page->records.size() != 1) Die("point read did not find its record");
  }
  double lookup_s = Seconds(Clock::now() - start);
  // Raw Gets of log rows of the same count, on the raw database.
  std::string prefix_probe;
  {
    std::unique_ptr<rocksdb::Iterator> it(kept_raw->NewIterator(rocksdb::ReadOptions()));
    it->SeekToFirst();
    prefix_probe = it->key().ToString().substr(0, 16);
  }
  start = Clock::now();
  std::string value;
  for (int read_idx = 0; read_idx < reads; ++read_idx) {
    std::string key = prefix_probe;
    uint64_t offset = rng() % (static_cast<uint64_t>(batch_count) * kBatchSize);
    for (int shift = 56; shift >= 0; shift -= 8) key.push_back(static_cast<char>(offset >> shift));
    if (!kept_raw->Get(rocksdb::ReadOptions(), key, &value).ok()) Die("raw get failed");
  }
  double raw_s = Seconds(Clock::now() - start);
  fmt::print("{:<22} {:>12.0f}\n", "read/raw Get", reads / raw_s);
  fmt::print("{:<22} {:>12.0f} {:>9} {:>9} {:>9} {:>9} {:>8}\n", "read/lookup point", reads / lookup_s, "", "", "",
             "", Ratio(reads / lookup_s, reads / raw_s));
  kept_service.reset();
  kept_raw_writer.reset();
  std::error_code ec;
  std::filesystem::remove_all(base, ec);
  return 0;
}
