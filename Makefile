# Aquifer: the two commands are `make run` and `make test`; everything else is a helper.
#   make run     install what is missing, build, start the server on the embedded default
#   make test    install what is missing, build, start the real peers, run every suite, stop the peers
#   make bench   build and run the benchmarks, printing figures and ratios
#   make fuzz    build the libFuzzer targets (clang, ASan+UBSan) and run each for FUZZ_SECONDS
#                (FUZZ_SECONDS_<target> for one, FUZZ_TARGETS="a b" for some) from fuzz/corpus/<target>/,
#                merging new inputs that add coverage back into it (FUZZ_MERGE=0: don't); fuzz/README.md
#   make san-build  build the sanitized test suites (build-tsan: ThreadSanitizer, build-asan: ASan+UBSan)
#   make soak    the long reliability runs (not part of make test): SOAK_CYCLES SIGKILLs of the whole
#                server under load (tests/soak), POWER_CYCLES simulated power cuts of the RocksDB
#                drivers and DB_POWER_CYCLES of the whole engine, DuckDB and SQLite included (tests/power)
SHELL := /bin/bash
BUILD ?= build
FUZZ_BUILD ?= build-fuzz
# The sanitizer builds: only the suites AQUIFER_SANITIZER_TESTS names (target `sanitizer_tests`),
# -O1 (fast enough at run time, cheaper to compile than -O2) with line tables only for the reports.
TSAN_BUILD ?= build-tsan
ASAN_BUILD ?= build-asan
SAN_FLAGS ?= -O1 -g1
BUILD_TYPE ?= RelWithDebInfo
FUZZ_SECONDS ?= 60
SOAK_CYCLES ?= 1000
POWER_CYCLES ?= 20000
DB_POWER_CYCLES ?= 2000
JOBS ?= $(shell nproc)
PORT ?= 8080
DATA ?= ./data
# ccache keys on paths relative to the checkout, so clones and worktrees in other folders share hits.
export CCACHE_BASEDIR := $(CURDIR)
export CCACHE_NOHASHDIR := 1

.PHONY: setup configure build run test unit bench fuzz fuzz-build san-build soak clean

setup:
	@bash scripts/setup.sh

configure: setup
	@cmake -S . -B $(BUILD) -G Ninja -DCMAKE_BUILD_TYPE=$(BUILD_TYPE) \
	  -DAQUIFER_FUZZ_BUILD_DIR=$(abspath $(FUZZ_BUILD)) >/dev/null

build: configure
	@cmake --build $(BUILD) -j $(JOBS)

run: build
	@$(BUILD)/src/aquifer/cli/aquifer serve --data $(DATA) --port $(PORT)

test: fuzz-build build san-build
	@BUILD=$(BUILD) SAN_BUILDS="$(TSAN_BUILD) $(ASAN_BUILD)" JOBS=$(JOBS) bash scripts/test.sh

bench: build
	@BUILD=$(BUILD) bash scripts/bench.sh

soak: build
	@AQUIFER_POWER_CYCLES=$(POWER_CYCLES) $(BUILD)/tests/power/power_loss_test \
	  --gtest_filter='PowerLoss.EveryAcknowledgedWriteSurvivesRandomPowerCuts'
	@AQUIFER_DB_POWER_CYCLES=$(DB_POWER_CYCLES) AQUIFER_POWERCUT_TEAR=random $(BUILD)/tests/power/power_db_test \
	  --gtest_filter='DbPowerLoss.*'
	@AQUIFER_SOAK_CYCLES=$(SOAK_CYCLES) $(BUILD)/tests/soak/soak_test

fuzz-build: setup
	@CCACHE_SLOPPINESS=time_macros cmake -S . -B $(FUZZ_BUILD) -G Ninja -DAQUIFER_FUZZ=ON \
	  -DCMAKE_C_COMPILER=clang -DCMAKE_CXX_COMPILER=clang++ -DCMAKE_BUILD_TYPE=Debug >/dev/null
	@cmake --build $(FUZZ_BUILD) -j $(JOBS)

fuzz: fuzz-build
	@FUZZ_BUILD=$(FUZZ_BUILD) bash scripts/fuzz.sh $(FUZZ_SECONDS)

# gtest_discover_tests runs each test binary after linking it: the sanitizer options apply there too.
san-build: setup
	@cmake -S . -B $(TSAN_BUILD) -G Ninja -DCMAKE_BUILD_TYPE=Debug -DAQUIFER_WITH_TSAN=ON \
	  -DAQUIFER_BUILD_BENCH=OFF -DCMAKE_C_FLAGS_DEBUG="$(SAN_FLAGS)" -DCMAKE_CXX_FLAGS_DEBUG="$(SAN_FLAGS)" >/dev/null
	@source scripts/sanitizers/env.sh $(TSAN_BUILD) && cmake --build $(TSAN_BUILD) -j $(JOBS) --target sanitizer_tests
	@cmake -S . -B $(ASAN_BUILD) -G Ninja -DCMAKE_BUILD_TYPE=Debug -DAQUIFER_WITH_ASAN=ON \
	  -DAQUIFER_BUILD_BENCH=OFF -DCMAKE_C_FLAGS_DEBUG="$(SAN_FLAGS)" -DCMAKE_CXX_FLAGS_DEBUG="$(SAN_FLAGS)" >/dev/null
	@source scripts/sanitizers/env.sh $(ASAN_BUILD) && cmake --build $(ASAN_BUILD) -j $(JOBS) --target sanitizer_tests

clean:
	rm -rf $(BUILD) $(FUZZ_BUILD) $(TSAN_BUILD) $(ASAN_BUILD)
