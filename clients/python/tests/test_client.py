"""The blocking client against the real binary: every method, batching within the
server's limits, idempotent retries, retries on 429 and connection errors, bad input."""

from __future__ import annotations

import json
import math
import threading
import time
from typing import Any, Dict, List

import numpy as np
import pandas as pd
import pytest

import aquifer
from conftest import EVENT_SCHEMA, CountingTransport, events, make_table, unique
from server import ADMIN_SECRET, AquiferServer, CuttingProxy


def log_of(c: aquifer.Client, table: str) -> List[Dict[str, Any]]:
    return list(c.iter_log(table, page_size=1000))


def strip_ts(records: List[Dict[str, Any]]) -> List[Dict[str, Any]]:
    out = []
    for r in records:
        assert isinstance(r.get("@timestamp"), int), r
        out.append({k: v for k, v in r.items() if k != "@timestamp"})
    return out


# ------------------------------------------------------------------ connect


def test_connect_with_url_and_secret_from_environment(server: AquiferServer, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AQUIFER_URL", server.url)
    monkeypatch.setenv("AQUIFER_SECRET", ADMIN_SECRET)
    with aquifer.Client() as c:
        assert c.url == server.url
        assert c.health()["status"] == "ok"
        assert "projects" in c.usage()
        assert c.openapi()["openapi"].startswith("3.")
    monkeypatch.setenv("AQUIFER_SECRET", "wrong-secret")
    with aquifer.Client() as c, pytest.raises(aquifer.Unauthorized) as e:
        c.usage()
    assert e.value.status == 401 and e.value.code == "unauthenticated"


def test_bad_url_is_refused() -> None:
    with pytest.raises(ValueError, match="http"):
        aquifer.Client("localhost:8080", "x")


# ------------------------------------------------------------------ tables


def test_create_and_describe_table_from_dict(client: aquifer.Client) -> None:
    project = unique("p")
    assert client.create_project(project)["name"] == project
    created = client.create_table(f"{project}.events", EVENT_SCHEMA, ["user", "seq"], use_warehouse=False)
    assert created["name"] == "events" and created["project"] == project
    described = client.describe_table(f"{project}.events")
    assert described["key"] == ["user", "seq"]
    assert described["schema"]["fields"] == EVENT_SCHEMA["fields"]
    assert described["use_warehouse"] is False and described["use_log"] is True
    assert described["instance_id"] == created["instance_id"]
    client.delete_table(f"{project}.events")
    with pytest.raises(aquifer.NotFound):
        client.describe_table(f"{project}.events")


def test_create_table_from_avro_schema_file(client: aquifer.Client, tmp_path: Any) -> None:
    project = unique("p")
    client.create_project(project)
    avsc = tmp_path / "events.avsc"
    avsc.write_text(json.dumps(EVENT_SCHEMA))
    client.create_table(f"{project}.from_file", str(avsc), "user,seq")
    assert client.describe_table(f"{project}.from_file")["key"] == ["user", "seq"]
    client.create_table(f"{project}.from_path", avsc, ["seq"])
    assert client.describe_table(f"{project}.from_path")["key"] == ["seq"]
    with pytest.raises(ValueError, match="cannot read the Avro schema file"):
        client.create_table(f"{project}.nope", str(tmp_path / "missing.avsc"), ["seq"])


def test_conflicts(client: aquifer.Client, table: str) -> None:
    project = table.split(".")[0]
    with pytest.raises(aquifer.Conflict) as e:
        client.create_project(project)
    assert e.value.status == 409 and e.value.code == "already_exists"
    with pytest.raises(aquifer.Conflict):
        client.create_table(table, EVENT_SCHEMA, ["seq"])


# ------------------------------------------------------------------ writes and reads


def test_write_list_in_batches_and_query_with_filters(client: aquifer.Client, table: str) -> None:
    records = events(250)
    result = client.write(table, records, wait="index", batch_records=100)
    assert (result.records, result.batches, result.replayed) == (250, 3, 0)
    assert len(result.write_ids) == 3 and len(set(result.write_ids)) == 3

    page = client.query(table, {"user": "u1", "seq": {"_gte": 10, "_lt": 40}}, limit=1000)
    assert [r["seq"] for r in page.data] == [i for i in range(10, 40) if i % 3 == 1]
    assert page.next_cursor is None and page.change_cursor
    assert page.residual is False
    # a filter on a non-key field is a residual scan, and says so
    page = client.query(table, json.dumps({"note": "n7"}))
    assert strip_ts(page.data) == [records[7]] and page.residual is True


def test_write_iterable_and_dataframe(client: aquifer.Client, table: str) -> None:
    gen = ({"user": "gen", "seq": i} for i in range(1234))
    assert client.write(table, gen, wait="log", batch_records=500).batches == 3
    got = list(client.iter_query(table, {"user": "gen"}, page_size=1000))
    assert [r["seq"] for r in got] == list(range(1234))
    assert all(r["amount"] is None and r["note"] == "" for r in got)

    frame = pd.DataFrame(
        {
            "user": ["df"] * 4,
            "seq": np.arange(4, dtype=np.int64),
            "amount": [1.5, np.nan, 3.25, None],
            "note": ["a", "b", "c", "d"],
        }
    )
    result = client.write(table, frame, wait=["index", "log"])
    assert result.records == 4
    got = strip_ts(client.query(table, {"user": "df"}).data)
    assert got == [
        {"user": "df", "seq": 0, "amount": 1.5, "note": "a"},
        {"user": "df", "seq": 1, "amount": None, "note": "b"},
        {"user": "df", "seq": 2, "amount": 3.25, "note": "c"},
        {"user": "df", "seq": 3, "amount": None, "note": "d"},
    ]


def test_pages_of_index_log_and_cursor(client: aquifer.Client, table: str) -> None:
    records = events(95)
    client.write(table, records, wait="index,log")
    first = client.query(table, limit=10)
    pages = list(client.pages(first, 10))
    assert len(pages) == 10 and [len(p.data) for p in pages] == [10] * 9 + [5]
    index = [r for p in pages for r in p.data]
    expected = sorted(records, key=lambda r: (r["user"], r["seq"]))
    assert strip_ts(index) == expected
    assert strip_ts(list(client.iter_cursor(first.next_cursor or "", limit=7))) == expected[10:]
    assert strip_ts(client.page(first.next_cursor or "", limit=3).data) == expected[10:13]

    log = list(client.iter_log(table, page_size=13))
    assert strip_ts(log) == records  # write order
    # from: a timestamp (ms); everything was written at or after the first record's
    assert len(list(client.iter_log(table, from_ms=log[0]["@timestamp"]))) == 95
    assert client.log(table, from_ms=log[-1]["@timestamp"] + 60_000).data == []


def test_batches_follow_the_servers_record_limit(small_limits_server: AquiferServer) -> None:
    with aquifer.Client(small_limits_server.url, ADMIN_SECRET) as c:
        table = make_table(c)
        result = c.write(table, events(35), wait="log")
        # 1000 per batch asked, the server says 10: the first batch is split, the rest planned at 10
        assert result.records == 35 and result.batches == 4
        assert strip_ts(log_of(c, table)) == events(35)
        assert c._limits.records == 10


def test_batches_follow_the_servers_body_limit(small_limits_server: AquiferServer) -> None:
    with aquifer.Client(small_limits_server.url, ADMIN_SECRET, batch_records=9) as c:
        table = make_table(c)
        records = [{"user": "big", "seq": i, "note": "x" * 1500} for i in range(9)]
        result = c.write(table, records, wait="log")  # 9 x ~1.5 KB > the 8 KiB body limit
        assert result.records == 9 and result.batches >= 2
        assert c._limits.body_bytes == 8192
        assert [r["seq"] for r in log_of(c, table)] == list(range(9))


def test_a_record_over_the_limit_fails_and_earlier_batches_stay(small_limits_server: AquiferServer) -> None:
    with aquifer.Client(small_limits_server.url, ADMIN_SECRET) as c:
        table = make_table(c)
        records = events(12) + [{"user": "huge", "seq": 99, "note": "y" * 3000}] + events(3, 100)
        with pytest.raises(aquifer.PayloadTooLarge) as e:
            c.write(table, records, wait="log")
        assert e.value.status == 413 and e.value.code == "too_large"
        assert e.value.written == 10  # the first batch of 10; the second (12 + huge) refused whole
        assert strip_ts(log_of(c, table)) == events(10)


def test_invalid_records_name_the_input_record_and_nothing_of_the_batch_is_written(
    client: aquifer.Client, table: str
) -> None:
    records = events(25)
    records[23]["seq"] = "not a number"
    with pytest.raises(aquifer.BadRequest) as e:
        client.write(table, records, wait="log", batch_records=10)
    err = e.value
    assert err.status == 400 and err.code == "invalid_records"
    assert err.details[0]["record"] == 3 and err.details[0]["input_record"] == 23
    assert err.details[0]["field"] == "seq"
    assert err.written == 20
    assert strip_ts(log_of(client, table)) == events(20)


def test_bad_input_is_refused_on_the_client(client: aquifer.Client, table: str) -> None:
    with pytest.raises(ValueError, match="project.table"):
        client.write("no_dot", [{}])
    with pytest.raises(TypeError, match="iterable of dicts"):
        client.write(table, {"user": "a", "seq": 1})
    with pytest.raises(TypeError, match="record 1 is a list"):
        client.write(table, [{"user": "a", "seq": 1}, ["x"]])
    with pytest.raises(ValueError, match="record 0 cannot be sent as JSON"):
        client.write(table, [{"user": "a", "seq": 1, "amount": math.nan}])
    assert log_of(client, table) == []


def test_bad_requests_carry_the_servers_code_and_message(client: aquifer.Client, table: str) -> None:
    cases = [
        lambda: client.query(table, {"nope": 1}),
        lambda: client.query(table, "{not json"),
        lambda: client.query(table, limit=5000),
        lambda: client.page("garbage"),
        lambda: client.create_table(table.split(".")[0] + ".bad", {"type": "record", "name": "x", "fields": []}, ["id"]),
        lambda: client.create_table(table.split(".")[0] + ".bad", EVENT_SCHEMA, ["amount"]),
        lambda: client.create_project("Bad-Name"),
        lambda: client.write(table, [{"user": "a", "seq": 1}], wait="disk"),
        lambda: client.sql("DROP TABLE x"),
        lambda: client.create_secret(table.split(".")[0], read=[1]),  # type: ignore[list-item]
    ]
    for case in cases:
        with pytest.raises(aquifer.BadRequest) as e:
            case()
        assert e.value.status == 400 and e.value.code.startswith("invalid_") and e.value.message
    with pytest.raises(aquifer.NotFound) as nf:
        client.query(table + "_missing")
    assert nf.value.code == "not_found" and "not found" in nf.value.message
    assert log_of(client, table) == []


# ------------------------------------------------------------------ idempotency and retries


def test_a_write_whose_answer_is_lost_is_retried_and_stored_once(
    client: aquifer.Client, table: str, proxy: CuttingProxy
) -> None:
    with aquifer.Client(proxy.url, ADMIN_SECRET) as through_proxy:
        proxy.swallow_answers = 1  # the server stores the first batch, its answer never comes back
        result = through_proxy.write(table, events(30), wait="log", batch_records=10)
    assert proxy.swallowed == 1
    assert result.records == 30 and result.batches == 3 and result.replayed == 1
    assert strip_ts(log_of(client, table)) == events(30)  # each record once


def test_a_rerun_with_an_idempotency_key_writes_nothing_twice(client: aquifer.Client, table: str) -> None:
    first = client.write(table, events(30), wait="log", batch_records=10, idempotency_key="load-1")
    again = client.write(table, events(30), wait="log", batch_records=10, idempotency_key="load-1")
    assert first.replayed == 0 and again.replayed == 3 and again.write_ids == first.write_ids
    assert strip_ts(log_of(client, table)) == events(30)


def test_writes_wait_out_a_server_restart(fresh_server: AquiferServer) -> None:
    with aquifer.Client(fresh_server.url, ADMIN_SECRET) as c:
        table = make_table(c)
        c.write(table, events(10), wait="log")
        fresh_server.stop()
        outcome: Dict[str, Any] = {}

        def write() -> None:  # connection refused until the server is back
            try:
                outcome["result"] = c.write(table, events(10, 10), wait="log")
            except Exception as e:  # noqa: BLE001 - reported below
                outcome["error"] = e

        writer = threading.Thread(target=write)
        writer.start()
        time.sleep(0.5)
        fresh_server.start()  # from this thread: the server dies with the thread that started it
        writer.join(60)
        assert "error" not in outcome, outcome.get("error")
        result = outcome["result"]
        assert result.records == 10
        assert strip_ts(log_of(c, table)) == events(20)


def test_no_retry_once_the_server_is_gone(fresh_server: AquiferServer) -> None:
    policy = aquifer.RetryPolicy(max_retries=2, backoff_initial=0.01)
    with aquifer.Client(fresh_server.url, ADMIN_SECRET, retry=policy) as c:
        fresh_server.stop()
        with pytest.raises(aquifer.ConnectionFailed, match="cannot reach"):
            c.usage()


def test_429_is_retried_after_retry_after(rate_limited_server: AquiferServer) -> None:
    no_retry = aquifer.RetryPolicy(max_retries=0)
    with aquifer.Client(rate_limited_server.url, ADMIN_SECRET, retry=no_retry) as c:
        with pytest.raises(aquifer.TooManyRequests) as e:
            for _ in range(50):  # 2 per second allowed
                c.usage()
        assert e.value.status == 429 and e.value.code == "resource_exhausted"
        assert e.value.retry_after is not None and e.value.retry_after >= 0
    counting = CountingTransport()
    with aquifer.Client(rate_limited_server.url, ADMIN_SECRET, transport=counting) as c:
        for _ in range(6):  # over the rate: each waits for its Retry-After instead of failing
            assert "projects" in c.usage()
    assert counting.statuses.count(200) == 6 and 429 in counting.statuses
    assert set(counting.statuses) == {200, 429}


def test_a_used_up_quota_is_not_retried(server: AquiferServer, client: aquifer.Client, table: str) -> None:
    project = table.split(".")[0]
    assert client.quotas(project)["write_bytes"] is None
    assert client.set_quotas(project, write_bytes=1)["write_bytes"] == 1
    counting = CountingTransport()
    with aquifer.Client(server.url, ADMIN_SECRET, transport=counting) as c:
        with pytest.raises(aquifer.TooManyRequests) as e:
            c.write(table, events(5), wait="log")
    assert counting.statuses == [429]  # Retry-After is the seconds to the month's end: raised at once
    assert e.value.code == "resource_exhausted" and (e.value.retry_after or 0) > 60
    assert log_of(client, table) == []
    client.set_quotas(project, write_bytes=None)


# ------------------------------------------------------------------ SQL


def test_sql_rows_dataframe_dry_run_and_jobs(client: aquifer.Client, table: str) -> None:
    client.write(table, events(30), wait="warehouse")
    query = f"SELECT user, count(*) AS n, sum(amount) AS total FROM {table} GROUP BY user ORDER BY user"
    result = client.sql(query)
    assert result.column_names == ["user", "n", "total"]
    expected = [[f"u{u}", 10, sum(i / 2 for i in range(u, 30, 3))] for u in range(3)]
    assert result.rows == expected
    assert result.records()[0] == {"user": "u0", "n": 10, "total": expected[0][2]}
    frame = client.sql_df(query)
    assert isinstance(frame, pd.DataFrame)
    assert list(frame.columns) == ["user", "n", "total"] and frame["n"].tolist() == [10, 10, 10]

    dry = client.sql_dry_run(query)
    assert dry["tables"] == [table] and isinstance(dry["bytes_scanned_estimate"], int)

    # every page of a job's rows, through the job and through /v1/cursor
    job_id = client.start_sql(f"SELECT seq FROM {table} ORDER BY seq")
    assert client.wait_job(job_id)["rows"] == 30
    assert client.job(job_id)["status"] == "done"
    first = client.job_rows(job_id, limit=7)
    assert first.columns and first.columns[0]["name"] == "seq"
    assert [row[0] for p in client.pages(first, 7) for row in p.data] == list(range(30))
    assert client.sql(f"SELECT seq FROM {table} ORDER BY seq", page_size=4).rows == [[i] for i in range(30)]


def test_sql_answers_small_queries_in_the_submission(client: aquifer.Client, table: str) -> None:
    client.write(table, events(30), wait="warehouse")
    # run_sql: POST /v1/sql with wait_ms; the job's status and first rows in one answer
    answer = client.run_sql(f"SELECT seq FROM {table} ORDER BY seq", wait_ms=10_000, limit=7)
    assert answer["status"] == "done" and answer["rows"] == 30
    assert [c["name"] for c in answer["columns"]] == ["seq"]
    assert answer["data"] == [[i] for i in range(7)] and answer["next_cursor"]
    # the job is recorded: its status and every page, as for any job
    assert client.job(answer["job_id"])["status"] == "done"
    rest = [row[0] for p in client.pages(answer["next_cursor"], 7) for row in p.data]
    assert rest == list(range(7, 30))
    # sql() sends one request for a small result: the job is never polled
    calls = []
    original = client._request

    def counting(method: str, path: str, **kwargs: object) -> object:
        calls.append((method, path))
        return original(method, path, **kwargs)

    client._request = counting  # type: ignore[method-assign]
    try:
        result = client.sql(f"SELECT count(*) AS n FROM {table}")
    finally:
        client._request = original  # type: ignore[method-assign]
    assert result.rows == [[30]] and result.column_names == ["n"]
    assert calls == [("POST", "/v1/sql")]
    failed = client.run_sql(f"SELECT CAST(note AS INTEGER) FROM {table}")
    assert failed["status"] == "failed" and failed["error"]


def test_sql_errors(client: aquifer.Client, table: str) -> None:
    client.write(table, events(3), wait="warehouse")
    with pytest.raises(aquifer.BadRequest):
        client.sql(f"SELECT nope FROM {table}")
    with pytest.raises(aquifer.NotFound):
        client.sql("SELECT * FROM nobody.nothing")
    job_id = client.start_sql(f"SELECT CAST(note AS INTEGER) FROM {table}")
    with pytest.raises(aquifer.JobFailed) as e:
        client.wait_job(job_id)
    assert e.value.job_id == job_id and e.value.error
    with pytest.raises(aquifer.Conflict) as conflict:
        client.job_rows(job_id)
    assert conflict.value.status == 409


# ------------------------------------------------------------------ secrets and usage


def test_minted_secrets_are_scoped(server: AquiferServer, client: aquifer.Client, table: str) -> None:
    project, name = table.split(".")
    client.write(table, events(3), wait="index")
    reader = client.create_secret(project, read=[name])
    assert reader.startswith("aq_")
    with aquifer.Client(server.url, reader) as r:
        assert len(r.query(table).data) == 3
        with pytest.raises(aquifer.Forbidden) as e:
            r.write(table, events(1))
        assert e.value.status == 403 and e.value.code == "permission_denied"
        with pytest.raises(aquifer.Forbidden):
            r.create_secret(project, read=["*"])
    other = make_table(client)
    writer = client.create_secret(other.split(".")[0], read=["*"], write=["*"], manage=True)
    with aquifer.Client(server.url, writer) as w:
        assert w.write(other, events(2), wait="index").records == 2
        with pytest.raises(aquifer.NotFound):  # another project's table: not even its name
            w.query(table)
        assert w.create_secret(other.split(".")[0], read=["*"]).startswith("aq_")


def test_usage_counts_writes(client: aquifer.Client, table: str) -> None:
    project = table.split(".")[0]
    client.write(table, events(40), wait="index")
    deadline = time.monotonic() + 30  # usage is flushed every second
    while True:
        usage = client.usage()
        mine = [p for p in usage["projects"] if p["project"] == project]
        if mine and mine[0]["month"]["write_records"] >= 40 or time.monotonic() > deadline:
            break
        time.sleep(0.2)
    assert mine and mine[0]["month"]["write_records"] == 40
    assert mine[0]["hour"]["write_bytes"] > 0
    assert usage["secret"]["month"]["write_records"] >= 40
