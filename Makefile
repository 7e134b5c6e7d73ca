# Aquifer: the two commands are `make run` and `make test`; everything else is a helper.
#   make run     install what is missing, build, start the server on the embedded default
#   make test    install what is missing, build, start the real peers, run every suite, stop the peers
#   make bench   build and run the benchmarks, printing figures and ratios
#   make fuzz    build the libFuzzer targets (clang, ASan+UBSan) and run each for FUZZ_SECONDS
SHELL := /bin/bash
BUILD ?= build
FUZZ_BUILD ?= build-fuzz
BUILD_TYPE ?= RelWithDebInfo
FUZZ_SECONDS ?= 60
JOBS ?= $(shell nproc)
PORT ?= 8080
DATA ?= ./data
# ccache keys on paths relative to the checkout, so clones and worktrees in other folders share hits.
export CCACHE_BASEDIR := $(CURDIR)
export CCACHE_NOHASHDIR := 1

.PHONY: setup configure build run test unit bench fuzz fuzz-build clean

setup:
	@bash scripts/setup.sh

configure: setup
	@cmake -S . -B $(BUILD) -G Ninja -DCMAKE_BUILD_TYPE=$(BUILD_TYPE) \
	  -DAQUIFER_FUZZ_BUILD_DIR=$(abspath $(FUZZ_BUILD)) >/dev/null

build: configure
	@cmake --build $(BUILD) -j $(JOBS)

run: build
	@$(BUILD)/src/aquifer/cli/aquifer serve --data $(DATA) --port $(PORT)

test: fuzz-build build
	@BUILD=$(BUILD) JOBS=$(JOBS) bash scripts/test.sh

bench: build
	@BUILD=$(BUILD) bash scripts/bench.sh

fuzz-build: setup
	@CCACHE_SLOPPINESS=time_macros cmake -S . -B $(FUZZ_BUILD) -G Ninja -DAQUIFER_FUZZ=ON \
	  -DCMAKE_C_COMPILER=clang -DCMAKE_CXX_COMPILER=clang++ -DCMAKE_BUILD_TYPE=Debug >/dev/null
	@cmake --build $(FUZZ_BUILD) -j $(JOBS)

fuzz: fuzz-build
	@FUZZ_BUILD=$(FUZZ_BUILD) bash scripts/fuzz.sh $(FUZZ_SECONDS)

clean:
	rm -rf $(BUILD) $(FUZZ_BUILD)
