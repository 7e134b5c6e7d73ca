#!/usr/bin/env python3
"""Schema-driven fuzzing of the real `aquifer serve` against its own /openapi.json.

Starts the binary on a free port (--port 0) with a fresh data dir and a known
admin secret, creates a project and a table so that generated requests reach
real data, then runs schemathesis (the project's .venv) with every check,
all four phases (examples, coverage, fuzzing, stateful) and a fixed seed.
Passes only if schemathesis reports no failure: no 5xx, no answer that breaks
the document (status, content type, headers, body schema), no request the
document allows that the server refuses (every operation), no invalid one it
accepts. The document's rules that JSON Schema cannot state (issued cursors,
SQL, a table key naming schema fields) are applied to valid requests by
schema_fuzz_hooks.py, which this script loads into schemathesis.

usage: schema_fuzz.py AQUIFER_BIN SCHEMATHESIS [--max-examples N] [--seed S]
Environment: AQUIFER_SCHEMA_FUZZ_EXAMPLES / _SEED override the defaults.
"""
import argparse
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.request

ADMIN = "schema-fuzz-admin-secret-0123456789"


def die_with_parent():
    """In the child: SIGKILL when this driver dies (a ctest timeout kills it)."""
    try:
        import ctypes
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
    except OSError:
        pass


def start_server(binary, data):
    env = dict(os.environ)
    env["AQUIFER_ADMIN_SECRET"] = ADMIN
    env["AQUIFER_SERVER_HANDLER_THREADS"] = "8"
    env["AQUIFER_SERVER_IO_THREADS"] = "2"
    proc = subprocess.Popen([binary, "serve", "--port", "0", "--data", data],
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, env=env, text=True,
                            preexec_fn=die_with_parent)
    lines = []
    found = {}

    def pump():
        for line in proc.stdout:
            lines.append(line)
            m = re.search(r"listening on (http://\S+)", line)
            if m:
                found["url"] = m.group(1)
    threading.Thread(target=pump, daemon=True).start()
    deadline = time.time() + 60
    while "url" not in found:
        if proc.poll() is not None or time.time() > deadline:
            proc.kill()
            sys.exit("aquifer serve did not start:\n" + "".join(lines[-50:]))
        time.sleep(0.05)
    return proc, found["url"], lines


def call(url, method, path, body=None):
    data = None if body is None else json.dumps(body).encode()
    req = urllib.request.Request(url + path, data=data, method=method)
    req.add_header("Authorization", "Bearer " + ADMIN)
    if data is not None:
        req.add_header("Content-Type", "application/json")
    try:
        with urllib.request.urlopen(req, timeout=30) as resp:
            return resp.status, resp.read()
    except urllib.error.HTTPError as err:
        return err.code, err.read()


def seed_data(url):
    status, body = call(url, "POST", "/v1/projects", {"name": "shop"})
    assert status == 201, (status, body)
    schema = {"type": "record", "name": "order", "fields": [
        {"name": "id", "type": "string"}, {"name": "qty", "type": "long"}]}
    status, body = call(url, "POST", "/v1/projects/shop/tables",
                        {"name": "orders", "schema": schema, "key": ["id"]})
    assert status == 201, (status, body)
    status, body = call(url, "POST", "/v1/projects/shop/tables/orders/records?wait=index,warehouse",
                        [{"id": "a", "qty": 1}, {"id": "b", "qty": 2}, {"id": "c", "qty": 3}])
    assert status == 200, (status, body)
    # Cursors the server issued, for the hooks (schema_fuzz_hooks.py): pages of
    # the index, the log and a finished job's rows.
    state = {"cursors": [], "job_cursors": {}, "sql_tables": ["shop.orders"]}
    for path in ("/v1/projects/shop/tables/orders/records?limit=1",
                 "/v1/projects/shop/tables/orders/log?limit=1"):
        status, body = call(url, "GET", path)
        assert status == 200, (path, status, body)
        page = json.loads(body)
        state["cursors"] += [page["next_cursor"], page["change_cursor"]]
    status, body = call(url, "POST", "/v1/sql", {"query": "SELECT id, qty FROM shop.orders"})
    assert status == 202, (status, body)
    job = json.loads(body)["job_id"]
    deadline = time.time() + 60
    while True:
        status, body = call(url, "GET", "/v1/jobs/" + job)
        assert status == 200, (status, body)
        if json.loads(body)["status"] == "done":
            break
        assert json.loads(body)["status"] in ("pending", "running") and time.time() < deadline, body
        time.sleep(0.1)
    status, body = call(url, "GET", "/v1/jobs/%s/rows?limit=1" % job)
    assert status == 200, (status, body)
    job_cursor = json.loads(body)["next_cursor"]
    assert job_cursor, body
    state["job_cursors"][job] = [job_cursor]
    state["cursors"].append(job_cursor)
    return state


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("binary")
    parser.add_argument("schemathesis")
    parser.add_argument("--max-examples", type=int,
                        default=int(os.environ.get("AQUIFER_SCHEMA_FUZZ_EXAMPLES", "15")))
    parser.add_argument("--seed", type=int,
                        default=int(os.environ.get("AQUIFER_SCHEMA_FUZZ_SEED", "20261129")))
    parser.add_argument("--keep", action="store_true", help="keep the data dir and report")
    parser.add_argument("--spec", help="test this document instead of the served one (debugging)")
    args = parser.parse_args()

    # SIGTERM/SIGINT end the run through the finally below (server stopped, dir removed).
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    work = tempfile.mkdtemp(prefix="aquifer-schema-fuzz.")
    data = os.path.join(work, "data")
    proc, url, lines = start_server(args.binary, data)
    rc = 1
    try:
        state_file = os.path.join(work, "state.json")
        with open(state_file, "w") as f:
            json.dump(seed_data(url), f)
        config = os.path.join(os.path.dirname(os.path.abspath(__file__)), "schemathesis.toml")

        def run(label, extra):
            cmd = [args.schemathesis, "--config-file", config, "--no-color", "run",
                   os.path.abspath(args.spec) if args.spec else url + "/openapi.json",
                   "--url", url,
                   "--max-examples", str(args.max_examples),
                   "--seed", str(args.seed),
                   "--workers", "1",
                   "--request-timeout", "30",
                   "--suppress-health-check", "all",
                   "-H", "Authorization: Bearer " + ADMIN,
                   "--report", "junit",
                   "--report-dir", os.path.join(work, "report-" + label)] + extra
            print("schema_fuzz: %s: seed %d, max-examples %d, server %s" %
                  (label, args.seed, args.max_examples, url), flush=True)
            started = time.time()
            here = os.path.dirname(os.path.abspath(__file__))
            env = dict(os.environ, NO_COLOR="1", SCHEMATHESIS_HOOKS="schema_fuzz_hooks",
                       AQUIFER_SCHEMA_FUZZ_STATE=state_file,
                       PYTHONPATH=os.pathsep.join(
                           [here] + [p for p in [os.environ.get("PYTHONPATH")] if p]))
            code = subprocess.call(cmd, env=env, cwd=work, preexec_fn=die_with_parent)
            print("schema_fuzz: %s: schemathesis exited %d after %.1f s" %
                  (label, code, time.time() - started), flush=True)
            return code

        # Every HTTP operation, all phases, positive and negative requests.
        rc = run("http", ["--phases", "examples,coverage,fuzzing,stateful",
                          "--exclude-operation-id", "subscribe"])
        # GET /v1/subscribe: a valid request switches the connection to a
        # WebSocket, which an HTTP client cannot speak (its next request on the
        # connection would be read as a frame). So only requests the document
        # forbids are sent here, and each must be refused; the 101 path and the
        # messages are tested by e2e_subscription_test and e2e_auth_test.
        rc = run("subscribe", ["--phases", "coverage,fuzzing", "--mode", "negative",
                               "--include-operation-id", "subscribe"]) or rc
        if proc.poll() is not None:
            print("schema_fuzz: the server died:\n" + "".join(lines[-50:]))
            rc = rc or 1
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        if args.keep:
            print("schema_fuzz: kept", work)
        else:
            shutil.rmtree(work, ignore_errors=True)
    sys.exit(rc)


if __name__ == "__main__":
    main()
