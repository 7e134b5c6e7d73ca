#!/usr/bin/env bash
# Installs everything Aquifer needs to build, test and benchmark on Debian 12, as root.
# Idempotent: on a ready machine it checks and returns in seconds.
#   scripts/setup.sh          build + test dependencies
# Everything fetched from npm/PyPI lands in ignored folders of the repo (third_party/, .venv/,
# tests/console/node_modules/).
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$(pwd)
export DEBIAN_FRONTEND=noninteractive

SUDO=""
if [ "$(id -u)" != 0 ]; then SUDO="sudo"; fi

PKGS=(
  # toolchain
  g++ clang libclang-rt-14-dev lld cmake ninja-build ccache pkg-config git ca-certificates make
  # libraries
  librocksdb-dev libsqlite3-dev libboost-dev libsimdjson-dev nlohmann-json3-dev
  libfmt-dev libspdlog-dev libcli11-dev libtomlplusplus-dev
  libzstd-dev liblz4-dev libxxhash-dev libssl-dev libcurl4-openssl-dev
  libpq-dev librdkafka-dev
  libgrpc++-dev libprotobuf-dev protobuf-compiler protobuf-compiler-grpc
  # real peers for the conformance suites (scripts/peers/): Postgres, and Kafka's jars through Maven
  postgresql-15 maven openjdk-17-jdk-headless
  # ClickHouse 18.16's engine library and its shared libraries; the server binary itself comes
  # from the clickhouse-server .deb, unpacked by scripts/peers/clickhouse (its postinst would
  # start a system-wide server on the default ports)
  clickhouse-common
  # tests and benchmarks
  libgtest-dev libgmock-dev libbenchmark-dev
  python3 python3-venv
  # npm for the DuckDB library, java for the emulators
  nodejs npm
  # the web console's browser tests (tests/console): Debian's Chromium, never a downloaded one
  chromium
)

missing=()
for p in "${PKGS[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
# node/npm may come from elsewhere (a nodesource or nvm install); only ask apt when the command is absent
if command -v npm >/dev/null 2>&1; then
  tmp=(); for p in "${missing[@]}"; do case "$p" in nodejs|npm) ;; *) tmp+=("$p");; esac; done; missing=("${tmp[@]+"${tmp[@]}"}")
fi
if [ ${#missing[@]} -gt 0 ]; then
  echo "setup: installing ${missing[*]}"
  $SUDO apt-get update -q
  $SUDO apt-get install -y -q --no-install-recommends "${missing[@]}"
fi

# DuckDB 1.4.4: prebuilt shared library and its C header of the same version, from npm (DEPS.md §1).
DUCK_VER=1.4.4
DUCK_BIND=1.4.4-r.4
DEST="$ROOT/third_party/duckdb"
if [ ! -f "$DEST/lib/libduckdb.so" ] || [ ! -f "$DEST/include/duckdb.h" ] || [ "$(cat "$DEST/VERSION" 2>/dev/null)" != "$DUCK_BIND" ]; then
  echo "setup: fetching DuckDB $DUCK_VER from npm"
  tmp=$(mktemp -d)
  (cd "$tmp" && npm pack --silent "@duckdb/node-bindings-linux-x64@$DUCK_BIND" "duckdb@$DUCK_VER" >/dev/null)
  mkdir -p "$tmp/nb" "$tmp/src"
  tar xzf "$tmp/duckdb-node-bindings-linux-x64-$DUCK_BIND.tgz" -C "$tmp/nb"
  tar xzf "$tmp/duckdb-$DUCK_VER.tgz" -C "$tmp/src" package/src/duckdb/src/include/duckdb.h
  rm -rf "$DEST"; mkdir -p "$DEST/include" "$DEST/lib"
  cp "$tmp/src/package/src/duckdb/src/include/duckdb.h" "$DEST/include/"
  cp "$tmp/nb/package/libduckdb.so" "$DEST/lib/"
  echo "$DUCK_BIND" > "$DEST/VERSION"
  rm -rf "$tmp"
fi

# fastavro: an independent Avro implementation for the interop tests.
VENV="$ROOT/.venv"
if [ ! -x "$VENV/bin/python" ] || ! "$VENV/bin/python" -c 'import fastavro' >/dev/null 2>&1; then
  echo "setup: creating $VENV with fastavro"
  /usr/bin/python3 -m venv "$VENV"
  "$VENV/bin/pip" install -q fastavro==1.9.7
fi
# schemathesis: the schema-driven fuzzer of the e2e_schema_fuzz suite (tests/e2e/schema_fuzz.py).
SCHEMATHESIS_VER=4.32.5
if [ "$("$VENV/bin/python" -c 'import importlib.metadata as m; print(m.version("schemathesis"))' 2>/dev/null)" != "$SCHEMATHESIS_VER" ]; then
  echo "setup: installing schemathesis $SCHEMATHESIS_VER into $VENV"
  "$VENV/bin/pip" install -q "schemathesis==$SCHEMATHESIS_VER"
fi

# moto: the S3 server the Redshift driver's staging upload is tested against (scripts/peers/moto).
MOTO_VER=5.2.5
if [ "$("$VENV/bin/python" -c 'import importlib.metadata as m; print(m.version("moto"))' 2>/dev/null)" != "$MOTO_VER" ] ||
   ! "$VENV/bin/python" -c 'import moto.server, flask_cors' >/dev/null 2>&1; then
  echo "setup: installing moto $MOTO_VER (S3 server mode) into $VENV"
  "$VENV/bin/pip" install -q "moto[s3,server]==$MOTO_VER"
fi

# The Python client (clients/python, ctest python_client): its dependencies, the pandas
# extra, pytest, and wheel (its suite builds the package offline, --no-build-isolation).
PYCLIENT_PINS=(httpx==0.28.1 websockets==17.4 pandas==3.1.1 pytest==9.2.0 wheel==0.45.1)
if ! "$VENV/bin/python" - "${PYCLIENT_PINS[@]}" >/dev/null 2>&1 <<'PY'
import importlib.metadata as m, sys
for pin in sys.argv[1:]:
    name, version = pin.split("==")
    assert m.version(name) == version, pin
PY
then
  echo "setup: installing the Python client's dependencies into $VENV"
  "$VENV/bin/pip" install -q "${PYCLIENT_PINS[@]}"
fi

# The Kafka broker's jars (Maven Central, cached in .cache/kafka/; seconds when cached).
bash "$ROOT/scripts/peers/kafka" fetch
# The Cassandra node's jars (Maven Central, cached in .cache/cassandra/; ~30 s cold, seconds when cached).
bash "$ROOT/scripts/peers/cassandra" fetch
# The ClickHouse 18.16 server binary (Debian's clickhouse-server .deb unpacked into .cache/clickhouse/;
# a second run returns at once).
bash "$ROOT/scripts/peers/clickhouse" fetch
# The BigQuery emulator (bqemulator from PyPI, in its own virtual environment .cache/bqemulator/venv,
# apart from .venv: ~590 MB of packages the other Python suites must not run on; ~2.5-6 min cold,
# seconds when ready).
bash "$ROOT/scripts/peers/bigquery" fetch

# playwright-core (drives Debian's chromium in tests/console; it downloads no browser), into the
# ignored tests/console/node_modules, at the version package-lock.json pins.
CONSOLE_TESTS="$ROOT/tests/console"
PW_WANT=$(node -p "require('$CONSOLE_TESTS/package-lock.json').packages['node_modules/playwright-core'].version")
PW_HAVE=$(node -p "try { require('$CONSOLE_TESTS/node_modules/playwright-core/package.json').version } catch { '' }")
if [ "$PW_HAVE" != "$PW_WANT" ]; then
  echo "setup: installing playwright-core $PW_WANT into $CONSOLE_TESTS/node_modules"
  (cd "$CONSOLE_TESTS" && npm ci --no-audit --no-fund --silent)
fi

# System user for throwaway Postgres clusters (initdb refuses root).
id pgtest >/dev/null 2>&1 || $SUDO useradd --system --no-create-home --shell /usr/sbin/nologin pgtest 2>/dev/null || true

echo "setup: ready"
