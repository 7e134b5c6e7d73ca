// catalog_bench: the SQLite catalog with page checksums (engine/checksum_vfs.h)
// against the same catalog without them (SqliteCatalogOptions::page_checksums
// = false: the file as binaries before checksums opened it), in one run.
//
// Each round runs both modes (which goes first alternates), each in a fresh file:
//   write      CreateTable + MintSecret, `tables` of each (write transactions,
//              each fsynced: synchronous=FULL)
//   open+list  a new connection (what a restart or a second process does):
//              open, then ListTables of the project, while the rows are
//              still in the WAL (pages read from WAL frames), then again
//              after a checkpoint (pages read from the main file)
//   cached     GetTable + ResolveSecret + Authorize on one connection (the
//              catalog's read cache: no page is read)
// Figures are medians over the rounds; the ratio is checksums / none.
//
// Usage: catalog_bench [tables=200] [rounds=5] [dir=$AQUIFER_BENCH_DIR or $TMPDIR]

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <map>
#include <string>
#include <vector>

#include <fmt/format.h>

#include "aquifer/base/uuid.h"
#include "aquifer/engine/catalog.h"

namespace {

using Clock = std::chrono::steady_clock;
using namespace aquifer;

constexpr const char* kSchema = R"({"type":"record","name":"Event","fields":[
  {"name":"user","type":"string"},{"name":"ts","type":"long"},
  {"name":"amount","type":["null","double"],"default":null}]})";

double Micros(Clock::duration d) { return std::chrono::duration<double, std::micro>(d).count(); }

void Check(const Status& status, const char* what) {
  if (!status.ok()) {
    fmt::print(stderr, "{}: {}\n", what, status.ToString());
    std::exit(1);
  }
}

std::unique_ptr<engine::Catalog> Open(const std::string& path, bool checksums) {
  engine::SqliteCatalogOptions options;
  options.page_checksums = checksums;
  auto catalog = engine::OpenSqliteCatalog(path, options);
  Check(catalog.status(), "open");
  return std::move(*catalog);
}

// µs per operation of each workload, one round of one mode.
std::map<std::string, double> Round(const std::string& dir, bool checksums, int tables) {
  std::map<std::string, double> us;
  std::filesystem::remove_all(dir);
  std::filesystem::create_directories(dir);
  const std::string path = dir + "/catalog.db";
  auto writer = Open(path, checksums);
  Check(writer->CreateProject("shop").status(), "project");
  std::vector<std::string> secrets;
  auto start = Clock::now();
  for (int i = 0; i < tables; ++i) {
    engine::TableSpec spec;
    spec.name = fmt::format("table_{}", i);
    spec.schema_json = kSchema;
    spec.key = {"user", "ts"};
    Check(writer->CreateTable("shop", spec).status(), "table");
    auto minted = writer->MintSecret("shop", {.read = {spec.name}});
    Check(minted.status(), "secret");
    secrets.push_back(minted->secret);
  }
  us["write (table + secret)"] = Micros(Clock::now() - start) / tables;

  auto open_and_list = [&](const char* name) {
    constexpr int kOpens = 20;
    auto begin = Clock::now();
    for (int i = 0; i < kOpens; ++i) {
      auto reader = Open(path, checksums);
      auto listed = reader->ListTables("shop");
      Check(listed.status(), "list");
      if (static_cast<int>(listed->size()) != tables) std::exit(2);
    }
    us[name] = Micros(Clock::now() - begin) / kOpens;
  };
  open_and_list("open+list, pages in the WAL");

  start = Clock::now();
  for (int pass = 0; pass < 20; ++pass) {
    for (int i = 0; i < tables; ++i) {
      const std::string table = fmt::format("table_{}", i);
      auto principal = writer->ResolveSecret(secrets[i]);
      Check(principal.status(), "resolve");
      Check(writer->GetTable("shop", table).status(), "get");
      Check(writer->Authorize(*principal, "shop", table, engine::Permission::kRead), "authorize");
    }
  }
  us["cached lookup (resolve + get + authorize)"] = Micros(Clock::now() - start) / (20.0 * tables);

  writer.reset();  // the last connection: checkpoints into the main file
  open_and_list("open+list, pages in the main file");
  return us;
}

}  // namespace

int main(int argc, char** argv) {
  const int tables = argc > 1 ? std::atoi(argv[1]) : 200;
  const int rounds = argc > 2 ? std::atoi(argv[2]) : 5;
  const char* tmp = std::getenv("AQUIFER_BENCH_DIR");
  if (tmp == nullptr) tmp = std::getenv("TMPDIR");
  const std::string base = fmt::format("{}/catalog_bench_{}", argc > 3 ? argv[3] : (tmp ? tmp : "/tmp"),
                                       aquifer::Uuid::Random().Hex());
  std::map<std::string, std::vector<double>> on, off;
  for (int round = 0; round < rounds; ++round) {
    for (int turn = 0; turn < 2; ++turn) {
      const bool checksums = (round + turn) % 2 == 0;
      for (const auto& [name, value] : Round(base, checksums, tables)) {
        (checksums ? on : off)[name].push_back(value);
      }
    }
  }
  std::filesystem::remove_all(base);
  auto median = [](std::vector<double> v) {
    std::sort(v.begin(), v.end());
    return v[v.size() / 2];
  };
  fmt::print("SQLite catalog, {} tables, median of {} rounds (µs per operation)\n", tables, rounds);
  fmt::print("{:<45} {:>12} {:>12} {:>8}\n", "workload", "checksums", "none", "ratio");
  for (const auto& [name, values] : on) {
    const double a = median(values), b = median(off[name]);
    fmt::print("{:<45} {:>12.1f} {:>12.1f} {:>8.3f}\n", name, a, b, a / b);
  }
  return 0;
}
