"""Subscriptions (sync iterator) against the real binary: order, filters, resuming from a
cursor, a connection cut by a proxy and a server restarted mid-stream, both resumed
without a gap or a repeat; errors."""

from __future__ import annotations

import threading
import time
from typing import Any, Dict, List

import pytest

import aquifer
from conftest import events, make_table
from server import ADMIN_SECRET, AquiferServer, CuttingProxy


def take(sub: aquifer.Subscription, n: int) -> List[Dict[str, Any]]:
    got: List[Dict[str, Any]] = []
    for record in sub:
        got.append(record)
        if len(got) == n:
            break
    return got


def write_slowly(url: str, table: str, total: int, batch: int, pause: float = 0.02) -> threading.Thread:
    def run() -> None:
        with aquifer.Client(url, ADMIN_SECRET) as c:
            for start in range(0, total, batch):
                c.write(table, events(batch, start))
                time.sleep(pause)

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    return thread


def test_changes_arrive_in_write_order_through_a_filter_and_resume_from_the_cursor(
    client: aquifer.Client, table: str
) -> None:
    client.write(table, events(9), wait="log")  # before the subscription: not seen
    with client.subscribe(table, filter={"user": "u1"}, timeout=30) as sub:
        writer = write_slowly(client.url, table, 60, 10)
        got = take(sub, 20)
        writer.join(30)
        assert [r["seq"] for r in got] == [i for i in range(60) if i % 3 == 1]
        assert all(isinstance(r["@timestamp"], int) for r in got)
        cursor = sub.cursor
    client.write(table, events(6, 60), wait="log")
    # the last batch's cursor resumes right after it, with the query's filter
    with client.subscribe(cursor=cursor, timeout=30) as again:
        assert [r["seq"] for r in take(again, 2)] == [61, 64]
    # a change cursor of an unfiltered read, and a filter in the subscribe message
    start = client.change_cursor(table)
    client.write(table, events(6, 100), wait="log")
    with client.subscribe(cursor=start, filter={"seq": {"_gte": 103}}, timeout=30) as sub:
        assert [r["seq"] for r in take(sub, 3)] == [103, 104, 105]
    with client.subscribe(cursor=start, timeout=30) as sub:
        batches = []
        for batch in sub.batches():
            batches.append(batch)
            if sum(len(b) for b in batches) == 6:
                break
        assert [r["seq"] for b in batches for r in b] == list(range(100, 106))


def test_a_cut_connection_is_resumed_without_gaps(
    client: aquifer.Client, table: str, proxy: CuttingProxy
) -> None:
    total = 1000
    with aquifer.Client(proxy.url, ADMIN_SECRET) as through_proxy:
        sub = through_proxy.subscribe(table, timeout=30)
        writer = write_slowly(client.url, table, total, 50)
        got: List[int] = []
        cuts = 0
        for record in sub:
            got.append(record["seq"])
            if len(got) in (150, 500, 800):
                cuts += proxy.cut()  # drops the WebSocket mid-stream, no close frame
            if len(got) == total:
                break
        sub.close()
        writer.join(60)
    assert cuts >= 3 and sub.reconnects >= 3
    assert got == list(range(total))  # every record once, in write order


def test_a_subscription_survives_a_server_restart(fresh_server: AquiferServer) -> None:
    with aquifer.Client(fresh_server.url, ADMIN_SECRET) as c:
        table = make_table(c)
        sub = c.subscribe(table, timeout=30, reconnect_timeout=60)
        c.write(table, events(100), wait="log")
        got = [r["seq"] for r in take(sub, 60)]  # part of what was written
        fresh_server.restart()  # SIGTERM: the server closes the socket (1001), then starts again
        c.write(table, events(100, 100), wait="log")
        got += [r["seq"] for r in take(sub, 140)]
        sub.close()
        assert got == list(range(200))
        assert sub.reconnects >= 1


def test_subscription_errors(server: AquiferServer, client: aquifer.Client, table: str) -> None:
    with pytest.raises(aquifer.NotFound):
        client.subscribe(table + "_missing")
    with pytest.raises(aquifer.BadRequest) as e:
        with client.subscribe(cursor="garbage", timeout=30) as sub:
            take(sub, 1)
    assert e.value.code == "invalid_argument" and "cursor" in e.value.message
    cursor = client.change_cursor(table)
    with pytest.raises(aquifer.BadRequest):
        with client.subscribe(cursor=cursor, filter={"bogus": 1}, timeout=30) as sub:
            take(sub, 1)
    with aquifer.Client(server.url, "not-a-secret") as bad:
        with pytest.raises(aquifer.Unauthorized):
            with bad.subscribe(cursor=cursor, timeout=30) as sub:
                take(sub, 1)
    with pytest.raises(ValueError):
        client.subscribe()
    with client.subscribe(table, timeout=0.5) as idle, pytest.raises(TimeoutError):
        take(idle, 1)


def test_a_subscription_gives_up_when_the_server_stays_away(fresh_server: AquiferServer) -> None:
    policy = aquifer.RetryPolicy(backoff_initial=0.05, backoff_max=0.2)
    with aquifer.Client(fresh_server.url, ADMIN_SECRET, retry=policy) as c:
        table = make_table(c)
        with c.subscribe(table, timeout=30, reconnect_timeout=1) as sub:
            c.write(table, events(3), wait="log")
            assert [r["seq"] for r in take(sub, 3)] == [0, 1, 2]
            fresh_server.stop()
            with pytest.raises(aquifer.ConnectionFailed, match="cannot open a subscription"):
                take(sub, 1)
            assert sub.reconnects >= 1
