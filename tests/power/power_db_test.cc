// Power loss for the whole embedded engine, DuckDB warehouse and SQLite
// catalog included (issue 11, item 1). Every file under the data directory
// runs on the power-cut shim (powercut.h): a forked child opens the real
// engine (catalog, queue, lookup, warehouse, usage: the embedded drivers,
// key files) with the shim active, ingests through Engine::Write (writers
// with every wait= kind, a thread creating tables and secrets), reports each
// acknowledgement to the parent over a pipe, and is SIGKILLed by the shim at
// a random mutating I/O call. The parent rolls every file back to its last
// synced state (half the cuts also keep a torn, sector-aligned part of the
// newest lost write) and forks the next child, which first checks, before
// ingesting again:
// - every acknowledged table is described and every acknowledged secret
//   authenticates (the SQLite catalog kept them);
// - a write with wait=index,warehouse succeeds (the stores caught up from
//   the queue), and then: every acknowledged record is in the index, exactly
//   once in the log and exactly once in the warehouse (SQL), and the three
//   hold the same keys (records written but never acknowledged may be there,
//   in all three alike).
// Some cycles also fail one chosen call (fsync or write of the warehouse,
// the catalog or their WAL) with EIO or ENOSPC before the cut; some cut
// during the open (recovery of a recovery).
//
// AQUIFER_DB_POWER_CYCLES sets the number of cuts (default 100; `make soak`
// runs 2000). A fresh data directory every kCyclesPerEpoch cycles keeps the
// checks' full scans small.
//
// Also: a DuckDB block and a SQLite page with flipped bytes are detected and
// never served (see the Corruption tests at the end).

#include <gtest/gtest.h>

#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <map>
#include <random>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include <nlohmann/json.hpp>

#include "aquifer/drivers/duckdb/warehouse.h"
#include "aquifer/engine/engine.h"
#include "aquifer/schema/codec.h"
#include "powercut.h"

namespace aquifer::engine {
namespace {

using json = nlohmann::json;
namespace pc = testing::powercut;
using namespace std::chrono_literals;

constexpr char kAdminSecret[] = "admin-secret-for-db-power-tests";
constexpr int kCyclesPerEpoch = 8;
constexpr int64_t kIdsPerCycle = 1'000'000;

int CyclesFromEnv(int fallback) {
  const char* text = std::getenv("AQUIFER_DB_POWER_CYCLES");
  if (text == nullptr || *text == '\0') return fallback;
  return std::max(1, std::atoi(text));
}

std::string Pad(int64_t k) { return std::string(static_cast<size_t>(20 + k % 200), static_cast<char>('a' + k % 26)); }

// What the parent learned from its children: acknowledged by the engine.
struct Acked {
  std::set<int64_t> ids;
  std::vector<std::string> tables;
  std::vector<std::string> secrets;
};

// What one child does.
struct Plan {
  std::string data_dir, journal, shadow;
  int cycle = 0;
  bool create = false;        // first cycle of an epoch: make project p and table t
  uint64_t cut_in_open = 0;   // nonzero: cut at this mutating call of the open
  uint64_t cut_after = 0;     // the cut, counted from the end of the checks
  uint32_t fail_ops = 0;      // nonzero: fail one call (after the checks)
  std::string fail_where;
  uint64_t fail_nth = 0;
  int fail_errno = 0;
};

// --- the child ---------------------------------------------------------------------

class Child {
 public:
  Child(int out, const Plan& plan, const Acked& acked) : out_(out), plan_(plan), acked_(acked) {}

  [[noreturn]] void Run() {
    try {
      RunOrThrow();
    } catch (const std::exception& e) {
      Die(std::string("exception: ") + e.what());
    }
    ::_exit(0);
  }

 private:
  void RunOrThrow() {
    pc::Activate(plan_.data_dir, plan_.journal, plan_.shadow);
    if (plan_.cut_in_open > 0) pc::CutAfter(plan_.cut_in_open);
    EngineOptions options;
    options.data_dir = plan_.data_dir;
    options.admin_secret = kAdminSecret;
    options.wait_timeout_ms = 10'000;
    options.worker_threads = 1;
    options.usage_flush_interval_ms = 50;
    options.write_path_probe_interval_ms = 20;
    options.queue.config["poll_interval_ms"] = "5";
    options.warehouse.config["job_threads"] = "1";
    options.warehouse.config["memory_limit"] = "256MiB";
    // Checkpoints (blocks rewritten, the WAL removed and made again) every
    // few writes, so that cuts land in them too.
    options.warehouse.config["checkpoint_threshold"] = "64KiB";
    auto opened = Engine::Open(options);
    if (!opened.ok()) Die("opening the engine after a power cut: " + opened.status().ToString());
    engine_ = std::move(*opened);
    if (Status s = engine_->Start(); !s.ok()) Die("starting the engine: " + s.ToString());
    auto admin = engine_->Authenticate(kAdminSecret);
    if (!admin.ok()) Die("the admin secret: " + admin.status().ToString());
    admin_ = *admin;
    if (plan_.create) {
      auto project = engine_->CreateProject(admin_, R"({"name":"p"})");
      if (!project.ok() && project.status().code() != StatusCode::kAlreadyExists) {
        Die("creating the project: " + project.status().ToString());
      }
      auto table = engine_->CreateTable(admin_, "p", TableBody("t").dump());
      if (table.ok()) {
        Send("T t");
      } else if (table.status().code() != StatusCode::kAlreadyExists) {
        Die("creating the table: " + table.status().ToString());
      }
    }
    std::string problems = plan_.create ? "" : Check();
    Send(problems.empty() ? "C ok" : "C fail " + problems);

    if (plan_.fail_ops != 0) pc::FailNth(plan_.fail_ops, plan_.fail_where, plan_.fail_nth, plan_.fail_errno);
    if (plan_.cut_in_open == 0) pc::CutAfter(plan_.cut_after);
    std::atomic<int64_t> next{static_cast<int64_t>(plan_.cycle) * kIdsPerCycle + 1};
    std::vector<std::thread> threads;
    for (int w = 0; w < 2; ++w) {
      threads.emplace_back([&, w] {
        std::mt19937 rng(static_cast<uint32_t>(plan_.cycle * 31 + w));
        for (;;) {
          const int n = 1 + static_cast<int>(rng() % 8);
          const int64_t first = next.fetch_add(n);
          const int kind = static_cast<int>(rng() % 4);
          WaitFor wait{.log = false, .index = kind == 1 || kind == 3, .warehouse = kind >= 2};
          auto ack = WriteIds(first, n, wait);
          // A Timeout (504) is durable too (README, Guarantees).
          if (ack.ok() || ack.status().code() == StatusCode::kTimeout) {
            Send("W " + std::to_string(first) + " " + std::to_string(n));
          } else {
            std::this_thread::sleep_for(5ms);
          }
        }
      });
    }
    threads.emplace_back([&] {
      for (int i = 0;; ++i) {
        std::this_thread::sleep_for(15ms);
        const std::string name = "c" + std::to_string(plan_.cycle) + "_" + std::to_string(i);
        if (engine_->CreateTable(admin_, "p", TableBody(name).dump()).ok()) Send("T " + name);
        auto minted = engine_->CreateSecret(admin_, "p", R"({"read":["*"],"write":["t"]})");
        if (minted.ok()) Send("S " + json::parse(*minted)["secret"].get<std::string>());
      }
    });
    for (auto& t : threads) t.join();
  }

  static json TableBody(const std::string& name) {
    return json{{"name", name},
                {"schema", json::parse(R"({"type":"record","name":"r","fields":[
                   {"name":"k","type":"long"},{"name":"pad","type":"string"}]})")},
                {"key", {"k"}}};
  }

  Result<WriteAck> WriteIds(int64_t first, int n, WaitFor wait) {
    json body = json::array();
    for (int64_t k = first; k < first + n; ++k) body.push_back({{"k", k}, {"pad", Pad(k)}});
    std::string text = body.dump();
    WriteRequest request;
    request.project = "p";
    request.table = "t";
    request.body = text;
    request.wait = wait;
    return engine_->Write(admin_, request, nullptr);
  }

  // One line to the parent, in one write(2) (atomic below PIPE_BUF).
  void Send(std::string line) {
    if (line.size() > 3000) line.resize(3000);
    for (char& c : line) {
      if (c == '\n') c = ' ';
    }
    line += '\n';
    (void)!::write(out_, line.data(), line.size());
  }
  [[noreturn]] void Die(const std::string& why) {
    Send("E " + why);
    ::_exit(3);
  }

  // Pages a record query; the keys in read order.
  Result<std::vector<int64_t>> ReadAll(Result<RecordPage> first, std::string* problems) {
    if (!first.ok()) return first.status();
    std::vector<int64_t> keys;
    auto take = [&](const json& data) {
      for (const auto& rec : data) {
        const int64_t k = rec["k"].get<int64_t>();
        if (!rec["pad"].is_string() || rec["pad"].get<std::string>() != Pad(k)) *problems += "record " + std::to_string(k) + " has wrong bytes; ";
        keys.push_back(k);
      }
    };
    take(json::parse(first->data_json));
    std::string cursor = first->next_cursor;
    while (!cursor.empty()) {
      AQ_ASSIGN_OR_RETURN(std::string page, engine_->ReadCursorJson(admin_, cursor, 1000));
      json parsed = json::parse(page);
      take(parsed["data"]);
      cursor = parsed["next_cursor"].is_string() ? parsed["next_cursor"].get<std::string>() : "";
    }
    return keys;
  }

  Result<std::vector<int64_t>> Warehouse() {
    AQ_ASSIGN_OR_RETURN(std::string job, engine_->SubmitSql(admin_, "SELECT k, pad FROM p.t"));
    for (int i = 0;; ++i) {
      AQ_ASSIGN_OR_RETURN(std::string polled, engine_->GetJobJson(admin_, job));
      json status = json::parse(polled);
      if (status["status"] == "done") break;
      if (status["status"] == "failed") return Internal("the warehouse query failed: {}", polled);
      if (i > 2000) return Internal("the warehouse query did not finish: {}", polled);
      std::this_thread::sleep_for(5ms);
    }
    std::vector<int64_t> keys;
    std::string cursor;
    do {
      AQ_ASSIGN_OR_RETURN(JobRowsPage page, engine_->ReadJobRows(admin_, job, cursor, 1000));
      for (const auto& row : json::parse(page.data_json)) {
        const int64_t k = row[0].get<int64_t>();
        if (!row[1].is_string() || row[1].get<std::string>() != Pad(k)) {
          return Internal("the warehouse row of record {} has wrong bytes: {}", k, row.dump().substr(0, 600));
        }
        keys.push_back(k);
      }
      cursor = page.next_cursor;
    } while (!cursor.empty());
    return keys;
  }

  std::string Check() {
    std::string problems;
    auto problem = [&](const std::string& text) {
      if (problems.size() < 2000) problems += text + "; ";
    };
    for (const std::string& table : acked_.tables) {
      auto described = engine_->DescribeTable(admin_, "p", table);
      if (!described.ok()) problem("acknowledged table " + table + " lost: " + described.status().ToString());
    }
    for (const std::string& secret : acked_.secrets) {
      auto who = engine_->Authenticate(secret);
      if (!who.ok()) problem("acknowledged secret " + secret.substr(0, 12) + "... lost: " + who.status().ToString());
    }
    // The barrier: once it is in the index and the warehouse, so is every
    // write acknowledged before it (one table is applied in queue order).
    const int64_t barrier = static_cast<int64_t>(plan_.cycle) * kIdsPerCycle;
    Result<WriteAck> ack = Internal("not written");
    for (int attempt = 0; attempt < 100; ++attempt) {
      ack = WriteIds(barrier, 1, {.log = false, .index = true, .warehouse = true});
      if (ack.ok() || ack.status().code() != StatusCode::kUnavailable) break;
      std::this_thread::sleep_for(50ms);
    }
    if (!ack.ok()) {
      problem("the stores did not catch up (a write with wait=index,warehouse): " + ack.status().ToString() +
              "; health: " + engine_->Health().ToString());
      return problems;
    }
    Send("W " + std::to_string(barrier) + " 1");
    std::set<int64_t> acked = acked_.ids;
    acked.insert(barrier);

    auto index = ReadAll(engine_->QueryIndex(admin_, IndexQuery{"p", "t", "", 1000}), &problems);
    auto log = ReadAll(engine_->QueryLog(admin_, LogQuery{"p", "t", 1000, 0}), &problems);
    auto warehouse = Warehouse();
    if (!index.ok()) problem("index read: " + index.status().ToString());
    if (!log.ok()) problem("log read: " + log.status().ToString());
    if (!warehouse.ok()) problem("warehouse read: " + warehouse.status().ToString());
    if (!problems.empty()) return problems;

    std::set<int64_t> in_index(index->begin(), index->end());
    if (in_index.size() != index->size()) problem("the index returned a key twice");
    std::map<int64_t, int> log_count, warehouse_count;
    for (int64_t k : *log) ++log_count[k];
    for (int64_t k : *warehouse) ++warehouse_count[k];
    int lost = 0;
    for (int64_t k : acked) {
      if (!in_index.count(k) || !log_count.count(k) || !warehouse_count.count(k)) {
        if (++lost <= 5) {
          problem("acknowledged record " + std::to_string(k) + " lost: index " +
                  std::to_string(in_index.count(k)) + ", log " + std::to_string(log_count.count(k)) +
                  ", warehouse " + std::to_string(warehouse_count.count(k)));
        }
      }
    }
    if (lost > 5) problem(std::to_string(lost) + " acknowledged records lost in all");
    int twice = 0;
    for (auto& [k, n] : log_count) {
      if (n > 1 && ++twice <= 3) problem("record " + std::to_string(k) + " logged " + std::to_string(n) + " times");
    }
    for (auto& [k, n] : warehouse_count) {
      if (n > 1 && ++twice <= 6) problem("record " + std::to_string(k) + " in the warehouse " + std::to_string(n) + " times");
    }
    std::set<int64_t> in_log, in_warehouse;
    for (auto& [k, n] : log_count) in_log.insert(k);
    for (auto& [k, n] : warehouse_count) in_warehouse.insert(k);
    if (in_log != in_index || in_warehouse != in_index) {
      problem("the stores disagree: index " + std::to_string(in_index.size()) + " keys, log " +
              std::to_string(in_log.size()) + ", warehouse " + std::to_string(in_warehouse.size()));
    }
    return problems;
  }

  int out_;
  const Plan& plan_;
  const Acked& acked_;
  std::unique_ptr<Engine> engine_;
  Principal admin_;
};

// --- the parent --------------------------------------------------------------------

struct Stats {
  int cycles = 0, checked = 0, torn = 0, cut_in_open = 0, faults = 0, epochs = 0;
  int64_t acked_writes = 0, acked_records = 0, acked_tables = 0, acked_secrets = 0;
  uint64_t undone = 0, bytes_restored = 0, entries_undone = 0;
  std::string first_problem;
  int failed_checks = 0;
};

class DbPowerLoss : public ::testing::Test {
 protected:
  void SetUp() override {
    std::string pattern = (std::filesystem::temp_directory_path() / "aquifer-dbpower-XXXXXX").string();
    ASSERT_NE(::mkdtemp(pattern.data()), nullptr);
    root_ = pattern;
  }
  void TearDown() override { std::filesystem::remove_all(root_); }

  // Runs one child to its cut; adds what it acknowledged to `acked`.
  // Returns the child's check line ("ok", "fail ...", or "" when it died before).
  std::string RunChild(const Plan& plan, Acked* acked, Stats* stats, std::string* error) {
    int fds[2];
    if (::pipe2(fds, O_CLOEXEC) != 0) {
      *error = "pipe failed";
      return "";
    }
    std::fflush(stdout);
    std::fflush(stderr);
    pid_t pid = ::fork();
    if (pid == 0) {
      ::close(fds[0]);
      Child(fds[1], plan, *acked).Run();
    }
    ::close(fds[1]);
    std::string check, buffer;
    const auto deadline = std::chrono::steady_clock::now() + 60s;
    bool killed = false;
    for (;;) {
      pollfd p{fds[0], POLLIN, 0};
      int ready = ::poll(&p, 1, 100);
      if (ready > 0) {
        char buf[4096];
        ssize_t n = ::read(fds[0], buf, sizeof buf);
        if (n <= 0) break;  // the child died: its end of the pipe closed
        buffer.append(buf, static_cast<size_t>(n));
        size_t eol;
        while ((eol = buffer.find('\n')) != std::string::npos) {
          std::string line = buffer.substr(0, eol);
          buffer.erase(0, eol + 1);
          if (line.starts_with("W ")) {
            int64_t first = 0, count = 0;
            std::sscanf(line.c_str() + 2, "%lld %lld", reinterpret_cast<long long*>(&first),
                        reinterpret_cast<long long*>(&count));
            for (int64_t k = first; k < first + count; ++k) acked->ids.insert(k);
            ++stats->acked_writes;
            stats->acked_records += count;
          } else if (line.starts_with("T ")) {
            acked->tables.push_back(line.substr(2));
            ++stats->acked_tables;
          } else if (line.starts_with("S ")) {
            acked->secrets.push_back(line.substr(2));
            ++stats->acked_secrets;
          } else if (line.starts_with("C ")) {
            check = line.substr(2);
          } else if (line.starts_with("E ")) {
            *error = line.substr(2);
          }
        }
      }
      if (!killed && std::chrono::steady_clock::now() > deadline) {
        ::kill(pid, SIGKILL);  // the shim's cut never came: cut here
        killed = true;
      }
    }
    ::close(fds[0]);
    int wstatus = 0;
    ::waitpid(pid, &wstatus, 0);
    if (error->empty() && !(WIFSIGNALED(wstatus) && WTERMSIG(wstatus) == SIGKILL)) {
      *error = "the child ended without a power cut (status " + std::to_string(wstatus) + ")";
    }
    return check;
  }

  Stats Run(int cycles, uint64_t seed) {
    Stats stats;
    std::mt19937_64 rng(seed);
    Acked acked;
    std::string data;
    const std::string journal = root_ + "/journal", shadow = root_ + "/shadow";
    // Checks the last cut of an epoch (a child that checks, then is cut at once).
    auto check_last = [&](int cycle) {
      Plan last;
      last.data_dir = data;
      last.journal = journal;
      last.shadow = shadow;
      last.cycle = cycle;
      last.cut_after = 1;
      Cycle(last, &acked, &stats, rng, /*count=*/false);
    };
    bool new_epoch = true;
    for (int cycle = 0; cycle < cycles; ++cycle) {
      if (new_epoch || cycle % kCyclesPerEpoch == 0) {
        if (!new_epoch) {
          check_last(cycle);
          std::filesystem::remove_all(data);
        }
        data = root_ + "/data" + std::to_string(stats.epochs++);
        std::filesystem::create_directories(data);
        acked = Acked{};
        new_epoch = true;
      }
      Plan plan;
      plan.data_dir = data;
      plan.journal = journal;
      plan.shadow = shadow;
      plan.cycle = cycle;
      plan.create = new_epoch;
      new_epoch = false;
      const uint64_t roll = rng() % 100;
      if (roll < 8 && !plan.create) {
        plan.cut_in_open = std::uniform_int_distribution<uint64_t>(1, 60)(rng);
        ++stats.cut_in_open;
      } else {
        plan.cut_after = std::uniform_int_distribution<uint64_t>(1, 300)(rng);
      }
      if (roll >= 85) {
        static const char* kWhere[] = {"warehouse.duckdb", "catalog.db", "warehouse.duckdb.wal", "catalog.db-wal"};
        plan.fail_where = kWhere[rng() % 4];
        plan.fail_ops = rng() % 2 ? pc::kOpSync : pc::kOpWrite;
        plan.fail_nth = 1 + rng() % 5;
        plan.fail_errno = rng() % 2 ? EIO : ENOSPC;
        ++stats.faults;
      }
      // A failed check is recorded; a fresh epoch follows (later checks would repeat it).
      if (!Cycle(plan, &acked, &stats, rng, /*count=*/true)) new_epoch = true;
      if ((cycle + 1) % 100 == 0) {  // for long runs
        std::printf("after %d cuts: %d checks, %d failed, %lld records and %lld tables acknowledged\n",
                    cycle + 1, stats.checked, stats.failed_checks, static_cast<long long>(stats.acked_records),
                    static_cast<long long>(stats.acked_tables));
        std::fflush(stdout);
      }
    }
    if (!new_epoch) check_last(cycles);
    return stats;
  }

  // One child and one recovery. False when its checks failed.
  bool Cycle(const Plan& plan, Acked* acked, Stats* stats, std::mt19937_64& rng, bool count) {
    std::string error;
    std::string check = RunChild(plan, acked, stats, &error);
    // Torn cuts (unsynced writes kept, the last one cut at a sector): half
    // the cuts by default and with AQUIFER_POWERCUT_TEAR=random, every cut
    // with =1, none with =0.
    const char* tear_mode = std::getenv("AQUIFER_POWERCUT_TEAR");
    const std::string_view mode = tear_mode != nullptr && *tear_mode != '\0' ? tear_mode : "random";
    const bool tear = mode == "1" || (mode == "random" && rng() % 2 == 0);
    // AQUIFER_POWERCUT_KEEP=<dir>: each recovered data directory and the
    // journal of its cut are kept until the next cut; when a check fails, the
    // state it checked is copied to <dir>/cycle<N> (for debugging).
    const char* keep = std::getenv("AQUIFER_POWERCUT_KEEP");
    std::error_code ec;
    if (keep != nullptr) {
      std::filesystem::copy_file(plan.journal, root_ + "/journal.cut",
                                 std::filesystem::copy_options::overwrite_existing, ec);
    }
    pc::Recovery recovery = pc::Recover(plan.journal, plan.shadow, rng, tear);
    if (count) ++stats->cycles;
    stats->torn += recovery.torn_bytes > 0;
    stats->undone += recovery.undone;
    stats->bytes_restored += recovery.bytes_restored;
    stats->entries_undone += recovery.entries_undone;
    if (std::getenv("AQUIFER_POWERCUT_VERBOSE") != nullptr) {
      std::string dropped;
      for (const std::string& d : recovery.dropped) dropped += " [" + d.substr(d.rfind('/') + 1) + "]";
      std::printf("cycle %d: %llu undone, %llu bytes, torn %llu; entries:%s\n", plan.cycle,
                  static_cast<unsigned long long>(recovery.undone),
                  static_cast<unsigned long long>(recovery.bytes_restored),
                  static_cast<unsigned long long>(recovery.torn_bytes), dropped.c_str());
    }
    std::string problem;
    if (!recovery.error.empty()) problem = "recovery: " + recovery.error;
    if (!error.empty() && plan.cut_in_open == 0) problem += error;
    if (!check.empty()) {
      ++stats->checked;
      if (check != "ok") problem += check;
    } else if (plan.cut_in_open == 0 && problem.empty()) {
      problem = "the child died before its checks";
    }
    const uint64_t previous_torn = last_torn_bytes_;
    last_torn_bytes_ = recovery.torn_bytes;
    if (keep != nullptr) {
      const std::string snap = root_ + "/recovered";
      if (!problem.empty()) {
        const std::string to = std::string(keep) + "/cycle" + std::to_string(plan.cycle);
        std::filesystem::create_directories(to, ec);
        std::filesystem::copy(snap, to, std::filesystem::copy_options::recursive, ec);
        std::printf("kept the state checked by cycle %d in %s\n", plan.cycle, to.c_str());
      }
      std::filesystem::remove_all(snap, ec);
      std::filesystem::create_directories(snap, ec);
      std::filesystem::copy(plan.data_dir, snap + "/data", std::filesystem::copy_options::recursive, ec);
      std::filesystem::rename(root_ + "/journal.cut", snap + "/journal", ec);
    }
    if (problem.empty()) return true;
    ++stats->failed_checks;
    // (The state checked is the one the previous recovery left.)
    std::printf("cycle %d failed (after a recovery that tore %llu bytes): %s\n", plan.cycle,
                static_cast<unsigned long long>(previous_torn), problem.c_str());
    std::fflush(stdout);
    if (stats->first_problem.empty()) {
      stats->first_problem = "cycle " + std::to_string(plan.cycle) + ": " + problem;
    }
    return false;
  }

  std::string root_;
  uint64_t last_torn_bytes_ = 0;
};

TEST_F(DbPowerLoss, EveryAcknowledgedWriteTableAndSecretSurvivesRandomPowerCuts) {
  const int cycles = CyclesFromEnv(100);
  const char* seed = std::getenv("AQUIFER_DB_POWER_SEED");  // another sequence of cuts
  Stats stats = Run(cycles, seed != nullptr && *seed != '\0' ? std::strtoull(seed, nullptr, 10) : 20261129);
  EXPECT_EQ(stats.first_problem, "");
  EXPECT_EQ(stats.failed_checks, 0);
  EXPECT_GE(stats.cycles, cycles);
  EXPECT_GT(stats.checked, cycles / 2) << "most children must get as far as their checks";
  EXPECT_GT(stats.undone, 0u) << "no cut lost unsynced data: the cuts test nothing";
  const char* tear = std::getenv("AQUIFER_POWERCUT_TEAR");
  if (tear != nullptr && std::string_view(tear) == "0") {
    EXPECT_EQ(stats.torn, 0) << "AQUIFER_POWERCUT_TEAR=0 asks for no torn cuts";
  } else {
    EXPECT_GT(stats.torn, 0) << "half the cuts (or all, AQUIFER_POWERCUT_TEAR=1) tear";
  }
  EXPECT_GT(stats.acked_records, 0);
  std::printf(
      "db power cuts: %d (%d in the open, %d with an injected fault, %d torn), %d checks, %d epochs; "
      "acknowledged: %lld writes (%lld records), %lld tables, %lld secrets; undone: %llu changes "
      "(%llu bytes, %llu directory entries)\n",
      stats.cycles, stats.cut_in_open, stats.faults, stats.torn, stats.checked, stats.epochs,
      static_cast<long long>(stats.acked_writes), static_cast<long long>(stats.acked_records),
      static_cast<long long>(stats.acked_tables), static_cast<long long>(stats.acked_secrets),
      static_cast<unsigned long long>(stats.undone), static_cast<unsigned long long>(stats.bytes_restored),
      static_cast<unsigned long long>(stats.entries_undone));
}

// --- a failed DuckDB commit ----------------------------------------------------------

// Writes groups to a DuckDB warehouse (the driver, no engine) and reads back
// what it holds. The records are k = first..first+n-1, each with Pad(k).
class DuckDbGroups {
 public:
  explicit DuckDbGroups(const std::string& dir) {
    auto warehouse = drivers::duckdb::OpenWarehouse({{"job_threads", "1"}}, driver::DriverContext{dir});
    if (!warehouse.ok()) throw std::runtime_error(warehouse.status().ToString());
    warehouse_ = *warehouse;
    auto schema = schema::Schema::Parse(R"({"type":"record","name":"r","fields":[
        {"name":"k","type":"long"},{"name":"pad","type":"string"}]})", {"k"});
    if (!schema.ok()) throw std::runtime_error(schema.status().ToString());
    instance_.instance_id = Uuid::Parse("01234567-89ab-cdef-0123-456789abcdef").value();
    instance_.project = "p";
    instance_.table = "t";
    instance_.schema = *schema;
  }
  // Leaves the database open (as a process that dies does).
  void Leak() { new std::shared_ptr<driver::WarehouseService>(warehouse_); }

  Status Register() { return warehouse_->RegisterInstance(instance_); }
  // Groups named g<first>, each of `n` records.
  Status Write(std::vector<std::pair<int64_t, int>> groups) {
    std::vector<driver::Record> records;
    std::vector<driver::RecordGroup> ids;
    for (auto [first, n] : groups) {
      ids.push_back({"g" + std::to_string(first), static_cast<size_t>(n)});
      for (int64_t k = first; k < first + n; ++k) {
        driver::Record record;
        record.key = "key" + std::to_string(k);
        record.timestamp_ms = 1'000'000 + k;
        auto avro = schema::JsonToAvro(*instance_.schema, json{{"k", k}, {"pad", Pad(k)}}.dump());
        if (!avro.ok()) return avro.status();
        record.avro = *avro;
        records.push_back(std::move(record));
      }
    }
    return warehouse_->WriteToWarehouse(instance_, records, ids);
  }
  // The rows of `sql`, each a JSON array.
  Result<std::vector<json>> Rows(const std::string& sql) {
    const Uuid job = Uuid::Random();
    AQ_RETURN_IF_ERROR(warehouse_->StartQuery(job, sql, {}).status());
    for (int i = 0;; ++i) {
      AQ_ASSIGN_OR_RETURN(driver::Job polled, warehouse_->PollJob(job));
      if (polled.status == driver::JobStatus::kDone) break;
      if (polled.status == driver::JobStatus::kFailed) return Internal("job failed: {}", polled.error);
      if (i > 2000) return Internal("the job did not finish");
      std::this_thread::sleep_for(5ms);
    }
    std::vector<json> rows;
    std::string page;
    do {
      AQ_ASSIGN_OR_RETURN(driver::RowPage got, warehouse_->ReadJobRows(job, page, 1000));
      for (const std::string& row : got.rows) rows.push_back(json::parse(row));
      page = got.next;
    } while (!page.empty());
    return rows;
  }
  // Problems with what the warehouse holds: records 1..last, each once with
  // its bytes, and `groups` applied ids of the group names.
  std::string Problems(int64_t last, size_t groups) {
    std::string problems;
    const std::string table = warehouse_->TableName(instance_);
    auto rows = Rows("SELECT k, pad FROM " + table + " ORDER BY k");
    if (!rows.ok()) return rows.status().ToString();
    std::map<int64_t, int> seen;
    for (const json& row : *rows) {
      const int64_t k = row[0].get<int64_t>();
      ++seen[k];
      if (row[1] != Pad(k)) problems += "record " + std::to_string(k) + " has pad " + row[1].dump() + "; ";
    }
    for (int64_t k = 1; k <= last; ++k) {
      if (seen[k] != 1) problems += "record " + std::to_string(k) + " stored " + std::to_string(seen[k]) + " times; ";
    }
    if (seen.size() != static_cast<size_t>(last)) problems += std::to_string(seen.size()) + " records stored; ";
    auto ids = Rows("SELECT id FROM " + table.substr(0, table.size() - 1) + "__applied\" ORDER BY id");
    if (!ids.ok()) return problems + ids.status().ToString();
    for (const json& id : *ids) {
      // HexOf("g1") is "6731": a group id of the test, nothing else.
      if (!id[0].get<std::string>().starts_with("67") || id[0].get<std::string>().size() != 4) {
        problems += "applied id " + id[0].dump() + " is not a group's; ";
      }
    }
    if (ids->size() != groups) problems += std::to_string(ids->size()) + " applied ids; ";
    return problems;
  }

 private:
  std::shared_ptr<driver::WarehouseService> warehouse_;
  driver::InstanceInfo instance_;
};

// DuckDB 1.4 reverts the rows of a commit whose WAL write failed but not the
// strings they added to the table's in-memory segment: the next string
// appended there read back as the reverted strings and itself concatenated,
// so a write retried after ENOSPC stored its first record's pad (and key)
// wrong and its group id as "g4g4", and once the process restarted the
// queue's redelivery applied the group again (the "record twice in the
// warehouse" of the power cuts; README). The driver checkpoints after a
// failed commit, before it appends anything else.
TEST_F(DbPowerLoss, AWriteRetriedAfterAFailedDuckDbCommitIsStoredOnceWithItsBytes) {
  const std::string dir = root_ + "/failed-commit";
  std::filesystem::create_directories(dir);
  int fds[2];
  ASSERT_EQ(::pipe(fds), 0);
  std::fflush(stdout);
  pid_t pid = ::fork();
  if (pid == 0) {  // fails one WAL write, retries, checks, then dies with the WAL as it is
    ::close(fds[0]);
    std::string out;
    try {
      pc::Activate(dir, root_ + "/journal", root_ + "/shadow");
      DuckDbGroups groups(dir);
      Status status = groups.Register();
      if (status.ok()) status = groups.Write({{1, 3}});
      if (!status.ok()) out += "first write: " + status.ToString() + "; ";
      pc::FailNth(pc::kOpWrite, "warehouse.duckdb.wal", 1, ENOSPC);
      status = groups.Write({{4, 3}});
      if (status.ok() || pc::Injected() != 1) out += "the write with a failed WAL write succeeded; ";
      // The engine's retry: the same group, with the next queued one.
      for (int attempt = 0; attempt < 3; ++attempt) {
        status = groups.Write({{4, 3}, {7, 3}});
        if (status.ok()) break;
      }
      if (!status.ok()) out += "the retry: " + status.ToString() + "; ";
      out += groups.Problems(9, 3);
      groups.Leak();
    } catch (const std::exception& e) {
      out += std::string("exception: ") + e.what();
    }
    out = out.empty() ? "ok" : out;
    (void)!::write(fds[1], out.data(), out.size());
    ::_exit(0);
  }
  ::close(fds[1]);
  std::string child;
  char buf[4096];
  for (ssize_t n; (n = ::read(fds[0], buf, sizeof buf)) > 0;) child.append(buf, static_cast<size_t>(n));
  ::close(fds[0]);
  ::waitpid(pid, nullptr, 0);
  EXPECT_EQ(child, "ok") << "in the process that saw the failed commit";
  // After a restart (the WAL replayed), the queue delivers group 4 again.
  DuckDbGroups groups(dir);
  ASSERT_TRUE(groups.Register().ok());
  Status again = groups.Write({{4, 3}});
  EXPECT_TRUE(again.ok()) << again.ToString();
  EXPECT_EQ(groups.Problems(9, 3), "") << "after a restart and a redelivery";
}

// --- corruption of stored pages ------------------------------------------------------

// The engine in this process (no shim), for the corruption tests.
class StoredCorruption : public DbPowerLoss {
 protected:
  Result<std::unique_ptr<Engine>> Open(const std::string& dir) {
    EngineOptions options;
    options.data_dir = dir;
    options.admin_secret = kAdminSecret;
    options.wait_timeout_ms = 10'000;
    options.worker_threads = 1;
    options.queue.config["poll_interval_ms"] = "5";
    options.warehouse.config["job_threads"] = "1";
    AQ_ASSIGN_OR_RETURN(auto engine, Engine::Open(options));
    AQ_RETURN_IF_ERROR(engine->Start());
    return engine;
  }

  // A data dir holding `n` records in table p.t, written with
  // wait=index,warehouse; the engine closed cleanly (DuckDB and SQLite
  // checkpoint then: the rows are in warehouse.duckdb and catalog.db).
  void Populate(const std::string& dir, int n, bool keep_open = false) {
    auto engine = Open(dir);
    ASSERT_TRUE(engine.ok()) << engine.status().ToString();
    auto admin = (*engine)->Authenticate(kAdminSecret);
    ASSERT_TRUE(admin.ok());
    ASSERT_TRUE((*engine)->CreateProject(*admin, R"({"name":"p"})").ok());
    json table{{"name", "t"},
               {"schema", json::parse(R"({"type":"record","name":"r","fields":[
                   {"name":"k","type":"long"},{"name":"pad","type":"string"}]})")},
               {"key", {"k"}}};
    ASSERT_TRUE((*engine)->CreateTable(*admin, "p", table.dump()).ok());
    for (int first = 0; first < n; first += 500) {
      json body = json::array();
      for (int64_t k = first; k < std::min(n, first + 500); ++k) body.push_back({{"k", k}, {"pad", Pad(k)}});
      std::string text = body.dump();
      WriteRequest request;
      request.project = "p";
      request.table = "t";
      request.body = text;
      request.wait = {.log = false, .index = true, .warehouse = true};
      auto ack = (*engine)->Write(*admin, request, nullptr);
      ASSERT_TRUE(ack.ok()) << ack.status().ToString();
    }
    if (keep_open) {
      (void)engine->release();  // never closed: the process dies with its WAL as it is
      return;
    }
    (*engine)->Stop();
  }

  // What SQL over p.t gives: the rows, or the error of the open, the job or its pages.
  struct SqlOutcome {
    Status status;
    std::map<int64_t, std::string> rows;
  };
  SqlOutcome QueryAll(const std::string& dir) {
    SqlOutcome out;
    auto engine = Open(dir);
    if (!engine.ok()) {
      out.status = engine.status();
      return out;
    }
    auto admin = (*engine)->Authenticate(kAdminSecret);
    if (!admin.ok()) {
      out.status = admin.status();
      return out;
    }
    auto job = (*engine)->SubmitSql(*admin, "SELECT k, pad FROM p.t");
    if (!job.ok()) {
      out.status = job.status();
      return out;
    }
    for (int i = 0; i < 2000; ++i) {
      auto polled = (*engine)->GetJobJson(*admin, *job);
      if (!polled.ok()) {
        out.status = polled.status();
        return out;
      }
      json status = json::parse(*polled);
      if (status["status"] == "failed") {
        out.status = Internal("job failed: {}", status.value("error", std::string()));
        return out;
      }
      if (status["status"] == "done") break;
      std::this_thread::sleep_for(5ms);
    }
    std::string cursor;
    do {
      auto page = (*engine)->ReadJobRows(*admin, *job, cursor, 1000);
      if (!page.ok()) {
        out.status = page.status();
        return out;
      }
      for (const auto& row : json::parse(page->data_json)) {
        out.rows[row[0].get<int64_t>()] = row[1].is_string() ? row[1].get<std::string>() : row[1].dump();
      }
      cursor = page->next_cursor;
    } while (!cursor.empty());
    return out;
  }

  static bool FlipByte(const std::string& path, uint64_t offset) {
    int fd = ::open(path.c_str(), O_RDWR | O_CLOEXEC);
    if (fd < 0) return false;
    unsigned char c = 0;
    bool ok = ::pread(fd, &c, 1, static_cast<off_t>(offset)) == 1;
    c ^= 0x10;
    ok = ok && ::pwrite(fd, &c, 1, static_cast<off_t>(offset)) == 1;
    ::close(fd);
    return ok;
  }
};

// DuckDB keeps a checksum per 256 KiB block. Each block of the database file
// in turn gets a flipped byte (in a fresh copy): the warehouse then fails to
// open or the query fails, naming the checksum, or (a block holding nothing
// the query reads) it answers every row right; never a wrong row.
TEST_F(StoredCorruption, AFlippedByteInADuckDbBlockIsDetectedNeverServed) {
  const std::string pristine = root_ + "/pristine";
  constexpr int kRows = 6000;
  Populate(pristine, kRows);
  const std::string db = pristine + "/warehouse.duckdb";
  ASSERT_FALSE(std::filesystem::exists(db + ".wal")) << "expected a checkpointed database";
  const uint64_t size = std::filesystem::file_size(db);
  constexpr uint64_t kHeaders = 3 * 4096, kBlock = 256 * 1024;
  ASSERT_GT(size, kHeaders);
  int detected = 0, intact = 0;
  for (uint64_t block = 0; kHeaders + block * kBlock < size; ++block) {
    const std::string dir = root_ + "/block" + std::to_string(block);
    std::filesystem::copy(pristine, dir, std::filesystem::copy_options::recursive);
    // A byte well inside the block's data (its first 8 bytes are the checksum).
    ASSERT_TRUE(FlipByte(dir + "/warehouse.duckdb", kHeaders + block * kBlock + 8 + 100 + block * 977 % 4000));
    SqlOutcome got = QueryAll(dir);
    if (!got.status.ok()) {
      ++detected;
      EXPECT_NE(got.status.ToString().find("checksum"), std::string::npos) << got.status.ToString();
    } else {
      ++intact;
      EXPECT_EQ(got.rows.size(), static_cast<size_t>(kRows)) << "block " << block;
      for (const auto& [k, pad] : got.rows) {
        ASSERT_EQ(pad, Pad(k)) << "block " << block << " served a damaged row " << k;
      }
    }
    std::filesystem::remove_all(dir);
  }
  std::printf("duckdb blocks with a flipped byte: %d detected, %d not read by the query (rows intact)\n",
              detected, intact);
  EXPECT_GT(detected, 0) << "no damaged block was noticed";
}

// A flipped byte in DuckDB's WAL (commits not yet checkpointed, as after a
// crash): the open fails naming the damage, or every committed row is there.
TEST_F(StoredCorruption, AFlippedByteInTheDuckDbWalIsDetectedNeverServed) {
  const std::string dir = root_ + "/wal";
  constexpr int kRows = 3000;
  int fds[2];
  ASSERT_EQ(::pipe(fds), 0);
  std::fflush(stdout);
  pid_t pid = ::fork();
  if (pid == 0) {  // writes, then dies without a checkpoint
    ::close(fds[0]);
    Populate(dir, kRows, /*keep_open=*/true);
    char c = ::testing::Test::HasFailure() ? 'f' : 'o';
    (void)!::write(fds[1], &c, 1);
    for (;;) ::pause();
  }
  ::close(fds[1]);
  char c = 0;
  ASSERT_EQ(::read(fds[0], &c, 1), 1);
  ::kill(pid, SIGKILL);
  ::waitpid(pid, nullptr, 0);
  ::close(fds[0]);
  ASSERT_EQ(c, 'o') << "the child could not write";
  const std::string wal = dir + "/warehouse.duckdb.wal";
  ASSERT_TRUE(std::filesystem::exists(wal));
  const uint64_t size = std::filesystem::file_size(wal);
  ASSERT_TRUE(FlipByte(wal, size / 2));
  SqlOutcome got = QueryAll(dir);
  if (got.status.ok()) {
    EXPECT_EQ(got.rows.size(), static_cast<size_t>(kRows)) << "a damaged WAL lost committed rows silently";
    for (const auto& [k, pad] : got.rows) ASSERT_EQ(pad, Pad(k)) << "served a damaged row " << k;
  } else {
    std::printf("duckdb WAL with a flipped byte: %s\n", got.status.ToString().c_str());
    EXPECT_NE(got.status.ToString().find("checksum"), std::string::npos) << got.status.ToString();
  }
}

// Each b-tree page of the catalog in turn gets an invalid page type (in a
// fresh copy). The engine then fails to open, or a catalog call fails, as
// Corruption naming the page's checksum (engine/checksum_vfs.h; before page
// checksums SQLite said "database disk image is malformed"), or (a page those
// calls do not read) everything reads right; never a wrong table or a grant
// that was not made.
TEST_F(StoredCorruption, ADamagedSqlitePageIsReportedNeverServed) {
  const std::string pristine = root_ + "/pristine";
  Populate(pristine, 10);
  {  // more catalog rows: a few tables and secrets
    auto engine = Open(pristine);
    ASSERT_TRUE(engine.ok()) << engine.status().ToString();
    auto admin = (*engine)->Authenticate(kAdminSecret);
    ASSERT_TRUE(admin.ok());
    for (int i = 0; i < 15; ++i) {
      json table{{"name", "x" + std::to_string(i)},
                 {"schema", json::parse(R"({"type":"record","name":"r","fields":[{"name":"k","type":"long"}]})")},
                 {"key", {"k"}}};
      ASSERT_TRUE((*engine)->CreateTable(*admin, "p", table.dump()).ok());
      ASSERT_TRUE((*engine)->CreateSecret(*admin, "p", R"({"read":["t"]})").ok());
    }
    (*engine)->Stop();
  }
  const std::string db = pristine + "/catalog.db";
  ASSERT_FALSE(std::filesystem::exists(db + "-wal") && std::filesystem::file_size(db + "-wal") > 0)
      << "expected a checkpointed catalog";
  const uint64_t pages = std::filesystem::file_size(db) / 4096;
  int detected = 0, intact = 0;
  // Every page when few, else a spread of them (each costs an engine open).
  const uint64_t stride = std::max<uint64_t>(1, pages / 12);
  for (uint64_t page = 2; page <= pages; page += stride) {
    const uint64_t offset = (page - 1) * 4096;
    unsigned char type = 0;
    {
      int fd = ::open(db.c_str(), O_RDONLY | O_CLOEXEC);
      ASSERT_EQ(::pread(fd, &type, 1, static_cast<off_t>(offset)), 1);
      ::close(fd);
    }
    if (type != 0x02 && type != 0x05 && type != 0x0a && type != 0x0d) continue;  // not a b-tree page
    const std::string dir = root_ + "/page" + std::to_string(page);
    std::filesystem::copy(pristine, dir, std::filesystem::copy_options::recursive);
    {
      int fd = ::open((dir + "/catalog.db").c_str(), O_WRONLY | O_CLOEXEC);
      unsigned char bad = 0x07;
      ASSERT_EQ(::pwrite(fd, &bad, 1, static_cast<off_t>(offset)), 1);
      ::close(fd);
    }
    Status status;
    auto engine = Open(dir);
    if (!engine.ok()) {
      status = engine.status();
    } else {
      auto admin = (*engine)->Authenticate(kAdminSecret);
      if (!admin.ok()) {
        status = admin.status();
      } else {
        for (int i = -1; i < 15 && status.ok(); ++i) {
          const std::string name = i < 0 ? "t" : "x" + std::to_string(i);
          auto described = (*engine)->DescribeTable(*admin, "p", name);
          if (!described.ok()) {
            status = described.status();
          } else {
            json table = json::parse(*described);
            EXPECT_EQ(table.value("name", ""), name) << "page " << page << " served " << *described;
          }
        }
        if (status.ok()) {
          auto minted = (*engine)->CreateSecret(*admin, "p", R"({"read":["t"]})");
          if (!minted.ok()) status = minted.status();
        }
      }
      (*engine)->Stop();
    }
    if (status.ok()) {
      ++intact;
    } else {
      ++detected;
      EXPECT_EQ(status.code(), StatusCode::kCorruption) << "page " << page << ": " << status.ToString();
      EXPECT_NE(status.ToString().find("checksum"), std::string::npos) << status.ToString();
    }
    std::filesystem::remove_all(dir);
  }
  std::printf("catalog b-tree pages with a damaged header: %d detected, %d not read (answers right)\n",
              detected, intact);
  EXPECT_GT(detected, 0);
}

// A byte flipped inside a catalog row — the field names in a table's stored
// schema — is caught by the page checksum: describing the table fails as
// Corruption naming catalog.db and the checksum, /healthz's check fails the
// same way, and the schema with the damaged name is never served. (Before
// page checksums SQLite read the row as data and served "pqd".)
TEST_F(StoredCorruption, AFlippedByteInACatalogRowIsDetectedNeverServed) {
  const std::string dir = root_ + "/row";
  Populate(dir, 10);
  const std::string db = dir + "/catalog.db";
  ASSERT_FALSE(std::filesystem::exists(db + "-wal") && std::filesystem::file_size(db + "-wal") > 0)
      << "expected a checkpointed catalog";
  std::string bytes;
  {
    std::ifstream in(db, std::ios::binary);
    bytes.assign(std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>());
  }
  int flipped = 0;
  for (size_t at = bytes.find("\"pad\""); at != std::string::npos; at = bytes.find("\"pad\"", at + 1)) {
    ASSERT_TRUE(FlipByte(db, at + 2));  // "pad" -> "pqd"
    ++flipped;
  }
  ASSERT_GT(flipped, 0) << "the schema text is not in catalog.db";

  auto engine = Open(dir);
  if (!engine.ok()) {  // the open read the page
    EXPECT_EQ(engine.status().code(), StatusCode::kCorruption) << engine.status().ToString();
    EXPECT_NE(engine.status().ToString().find("checksum"), std::string::npos) << engine.status().ToString();
    return;
  }
  Status status;
  auto admin = (*engine)->Authenticate(kAdminSecret);
  if (!admin.ok()) {  // the secrets' rows share the damaged page
    status = admin.status();
  } else {
    auto described = (*engine)->DescribeTable(*admin, "p", "t");
    ASSERT_FALSE(described.ok()) << "served a damaged schema: " << *described;
    status = described.status();
  }
  EXPECT_EQ(status.code(), StatusCode::kCorruption) << status.ToString();
  EXPECT_NE(status.ToString().find("checksum"), std::string::npos) << status.ToString();
  EXPECT_NE(status.ToString().find(db), std::string::npos) << status.ToString();
  Status health = (*engine)->Health();
  EXPECT_FALSE(health.ok());
  EXPECT_NE(health.ToString().find("checksum"), std::string::npos) << health.ToString();
  (*engine)->Stop();
}

}  // namespace
}  // namespace aquifer::engine
