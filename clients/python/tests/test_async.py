"""The asyncio client against the real binary: every method, errors, an idempotent retry
after a lost answer, and an async subscription cut (dropped socket, proxy cut) and
resumed, and one that survives a server restart, without gaps. Each test runs its own
event loop (asyncio.run): no plugin needed."""

from __future__ import annotations

import asyncio
import json
from typing import Any, AsyncIterator, Dict, List

import pandas as pd
import pytest

import aquifer
from conftest import EVENT_SCHEMA, events, unique
from server import ADMIN_SECRET, AquiferServer, CuttingProxy


def strip_ts(records: List[Dict[str, Any]]) -> List[Dict[str, Any]]:
    return [{k: v for k, v in r.items() if k != "@timestamp"} for r in records]


async def async_events(n: int, start: int) -> AsyncIterator[Dict[str, Any]]:
    for record in events(n, start):
        yield record


async def new_table(c: aquifer.AsyncClient) -> str:
    project = unique("ap")
    await c.create_project(project)
    table = f"{project}.events"
    await c.create_table(table, EVENT_SCHEMA, ["user", "seq"])
    return table


def test_async_every_method(server: AquiferServer, tmp_path: Any) -> None:
    avsc = tmp_path / "events.avsc"
    avsc.write_text(json.dumps(EVENT_SCHEMA))

    async def main() -> None:
        async with aquifer.AsyncClient(server.url, ADMIN_SECRET) as c:
            assert (await c.health())["status"] == "ok"
            project = unique("ap")
            assert (await c.create_project(project))["name"] == project
            table = f"{project}.events"
            await c.create_table(table, str(avsc), "user,seq")
            assert (await c.describe_table(table))["key"] == ["user", "seq"]

            result = await c.write(table, events(50), wait="index,log", batch_records=20)
            assert (result.records, result.batches) == (50, 3)
            frame = pd.DataFrame({"user": ["df", "df"], "seq": [1000, 1001], "amount": [None, 2.0]})
            assert (await c.write(table, frame, wait="log")).records == 2
            assert (await c.write(table, async_events(5, 2000), wait=["log", "index"])).records == 5

            page = await c.query(table, {"user": "u2", "seq": {"_lt": 12}})
            assert [r["seq"] for r in page.data] == [2, 5, 8, 11]
            assert [r["seq"] async for r in c.iter_query(table, {"user": "u0", "seq": {"_lt": 100}}, page_size=4)] == list(range(0, 50, 3))
            log = [r async for r in c.iter_log(table, page_size=9)]
            assert [r["seq"] for r in log] == list(range(50)) + [1000, 1001] + list(range(2000, 2005))
            first = await c.log(table, limit=10)
            assert first.next_cursor
            assert len((await c.page(first.next_cursor, limit=5)).data) == 5
            assert len([r async for r in c.iter_cursor(first.next_cursor, limit=20)]) == 47
            assert sum([len(p.data) async for p in c.pages(first, 10)]) == 57
            assert (await c.log(table, from_ms=log[-1]["@timestamp"] + 60_000)).data == []

            await c.write(table, [], wait="warehouse")  # nothing to send: no request
            await c.write(table, events(1, 3000), wait="warehouse")
            sql = await c.sql(f"SELECT count(*) AS n FROM {table} WHERE seq < 100")
            assert sql.column_names == ["n"] and sql.rows == [[50]]
            df = await c.sql_df(f"SELECT seq FROM {table} WHERE user = 'df' ORDER BY seq")
            assert df["seq"].tolist() == [1000, 1001]
            assert (await c.sql_dry_run(f"SELECT * FROM {table}"))["tables"] == [table]
            job_id = await c.start_sql(f"SELECT seq FROM {table} WHERE seq < 10 ORDER BY seq")
            assert (await c.wait_job(job_id))["status"] == "done"
            assert (await c.job(job_id))["rows"] == 10
            rows = await c.job_rows(job_id, limit=3)
            assert [row[0] async for p in c.pages(rows, 3) for row in p.data] == list(range(10))
            answer = await c.run_sql(f"SELECT seq FROM {table} WHERE seq < 10 ORDER BY seq", limit=4)
            assert answer["status"] == "done" and answer["data"] == [[0], [1], [2], [3]]
            assert (await c.job(answer["job_id"]))["rows"] == 10
            assert len((await c.page(answer["next_cursor"], limit=10)).data) == 6

            reader = await c.create_secret(project, read=["*"])
            async with aquifer.AsyncClient(server.url, reader) as r:
                assert len((await r.query(table, limit=1)).data) == 1
                with pytest.raises(aquifer.Forbidden):
                    await r.write(table, events(1))
            usage = await c.usage()
            assert any(p["project"] == project for p in usage["projects"])
            assert (await c.set_quotas(project, scan_bytes=10**12))["scan_bytes"] == 10**12
            assert (await c.quotas(project))["scan_bytes"] == 10**12

            with pytest.raises(aquifer.BadRequest) as e:
                await c.write(table, [{"user": "x", "seq": 1}, {"user": "x"}], wait="log")
            assert e.value.code == "invalid_records" and e.value.details[0]["input_record"] == 1
            with pytest.raises(aquifer.NotFound):
                await c.describe_table(f"{project}.missing")
            with pytest.raises(aquifer.Conflict):
                await c.create_project(project)
            with pytest.raises(aquifer.JobFailed):
                await c.sql(f"SELECT CAST(note AS INTEGER) FROM {table}")
            await c.delete_table(table)
            with pytest.raises(aquifer.NotFound):
                await c.query(table)

    asyncio.run(main())


def test_async_lost_answer_is_retried_and_stored_once(server: AquiferServer, proxy: CuttingProxy) -> None:
    async def main() -> None:
        async with aquifer.AsyncClient(server.url, ADMIN_SECRET) as c, aquifer.AsyncClient(
            proxy.url, ADMIN_SECRET
        ) as through_proxy:
            table = await new_table(c)
            proxy.swallow_answers = 1
            result = await through_proxy.write(table, events(20), wait="log", batch_records=10)
            assert proxy.swallowed == 1 and result.replayed == 1 and result.records == 20
            assert strip_ts([r async for r in c.iter_log(table, page_size=1000)]) == events(20)

    asyncio.run(main())


def test_async_subscription_cut_and_resumed_without_gaps(server: AquiferServer, proxy: CuttingProxy) -> None:
    total = 600

    async def main() -> None:
        async with aquifer.AsyncClient(server.url, ADMIN_SECRET) as c, aquifer.AsyncClient(
            proxy.url, ADMIN_SECRET
        ) as through_proxy:
            table = await new_table(c)

            async def writer() -> None:
                for start in range(0, total, 30):
                    await c.write(table, events(30, start))
                    await asyncio.sleep(0.02)

            got: List[int] = []
            async with through_proxy.subscribe(table, timeout=30) as sub:
                task = asyncio.create_task(writer())
                async for record in sub:
                    got.append(record["seq"])
                    if len(got) == 100:
                        await sub._drop()  # the client's socket aborted
                    if len(got) == 300:
                        assert proxy.cut() >= 1  # the connection cut on the way
                    if len(got) == total:
                        break
                await task
                assert sub.reconnects >= 2
            assert got == list(range(total))

    asyncio.run(main())


def test_async_subscription_survives_a_server_restart(fresh_server: AquiferServer) -> None:
    async def main() -> None:
        async with aquifer.AsyncClient(fresh_server.url, ADMIN_SECRET) as c:
            table = await new_table(c)
            async with c.subscribe(table, timeout=30) as sub:  # the feed starts here
                await c.write(table, events(50), wait="log")
                got: List[int] = []
                async for record in sub:
                    got.append(record["seq"])
                    if len(got) == 30:
                        break
                fresh_server.restart()  # blocks the loop for a moment; the socket is closed (1001)
                await c.write(table, events(50, 50), wait="log")
                async for record in sub:  # first the rest of the batch partly read, then resumed
                    got.append(record["seq"])
                    if len(got) == 100:
                        break
            assert got == list(range(100)) and sub.reconnects >= 1

    asyncio.run(main())


def test_async_subscription_errors(server: AquiferServer) -> None:
    async def main() -> None:
        async with aquifer.AsyncClient(server.url, ADMIN_SECRET) as c:
            table = await new_table(c)
            with pytest.raises(aquifer.NotFound):
                async with c.subscribe(table + "x"):
                    pass
            with pytest.raises(aquifer.BadRequest):
                async for _ in c.subscribe(cursor="garbage", timeout=30):
                    break
            async with c.subscribe(table, timeout=0.3) as idle:
                with pytest.raises(TimeoutError):
                    async for _ in idle:
                        break

    asyncio.run(main())
