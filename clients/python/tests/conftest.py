"""Fixtures: the real `aquifer` binary on free ports (server.py), clients, fresh tables.

Every dependency is imported here at collection, so a missing one fails the run with an
ImportError naming it (scripts/setup.sh installs them into the project's .venv); nothing
is skipped."""

from __future__ import annotations

import itertools
import os
from typing import Any, Dict, Iterator

import httpx  # fail loudly when missing
import pandas  # noqa: F401
import pytest
import websockets  # noqa: F401

import aquifer
from server import ADMIN_SECRET, AquiferServer, CuttingProxy

EVENT_SCHEMA: Dict[str, Any] = {
    "type": "record",
    "name": "event",
    "fields": [
        {"name": "user", "type": "string"},
        {"name": "seq", "type": "long"},
        {"name": "amount", "type": ["null", "double"], "default": None},
        {"name": "note", "type": "string", "default": ""},
    ],
}

_names = itertools.count()


def unique(prefix: str) -> str:
    return f"{prefix}{os.getpid()}_{next(_names)}"


RUNNING: list[AquiferServer] = []


def start(env: Dict[str, str] | None = None) -> AquiferServer:
    server = AquiferServer(env)
    RUNNING.append(server)
    try:
        server.start()
    except Exception:
        server.close()
        RUNNING.remove(server)
        raise
    return server


@pytest.fixture(scope="session")
def server() -> Iterator[AquiferServer]:
    s = start()
    yield s
    s.close()
    RUNNING.remove(s)


@pytest.fixture
def fresh_server() -> Iterator[AquiferServer]:
    """A server of the test's own (the test may restart it)."""
    s = start()
    yield s
    s.close()
    RUNNING.remove(s)


@pytest.fixture(scope="session")
def small_limits_server() -> Iterator[AquiferServer]:
    """Small request limits: 8 KiB bodies, 10 records per write, 2 KiB records."""
    s = start(
        {
            "AQUIFER_SERVER_MAX_BODY_BYTES": "8192",
            "AQUIFER_LOOKUP_MAX_RECORDS_IN_BATCH": "10",
            "AQUIFER_LOOKUP_MAX_RECORD_SIZE": "2048",
        }
    )
    yield s
    s.close()
    RUNNING.remove(s)


@pytest.fixture(scope="session")
def rate_limited_server() -> Iterator[AquiferServer]:
    """Two requests per second per secret, bursts of one."""
    s = start(
        {"AQUIFER_SERVER_RATE_LIMIT_PER_SECRET": "2", "AQUIFER_SERVER_RATE_LIMIT_BURST": "1"}
    )
    yield s
    s.close()
    RUNNING.remove(s)


@pytest.fixture
def proxy(server: AquiferServer) -> Iterator[CuttingProxy]:
    p = CuttingProxy(server.port)
    yield p
    p.close()


@pytest.fixture
def client(server: AquiferServer) -> Iterator[aquifer.Client]:
    with aquifer.Client(server.url, ADMIN_SECRET) as c:
        yield c


def make_table(c: aquifer.Client, schema: Dict[str, Any] = EVENT_SCHEMA, key: Any = ("user", "seq")) -> str:
    project = unique("p")
    c.create_project(project)
    table = f"{project}.{unique('t')}"
    c.create_table(table, schema, list(key))
    return table


@pytest.fixture
def table(client: aquifer.Client) -> str:
    """A fresh `project.table` with EVENT_SCHEMA keyed by (user, seq)."""
    return make_table(client)


class CountingTransport(httpx.HTTPTransport):
    """A real HTTP transport that counts the requests and the statuses it saw."""

    def __init__(self) -> None:
        super().__init__()
        self.statuses: list[int] = []

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        response = super().handle_request(request)
        self.statuses.append(response.status_code)
        return response


def events(n: int, start: int = 0, users: int = 3) -> list[Dict[str, Any]]:
    return [
        {"user": f"u{i % users}", "seq": i, "amount": float(i) / 2, "note": f"n{i}"}
        for i in range(start, start + n)
    ]


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[Any]) -> Iterator[None]:
    """A failed test's report shows the output of every server still running."""
    outcome: Any = yield
    rep = outcome.get_result()
    if rep.when == "call" and rep.failed:
        for s in list(RUNNING):
            rep.sections.append((f"aquifer serve on port {s.port}", s.output()))
