"""The retry policy, exactly: which answers are retried, how long each wait is, and that a
write's retries carry one Idempotency-Key. The real server cannot be made to answer 503
on demand here, so these run on httpx.MockTransport (the rest of the suite, including
retries on 429 and connection errors, runs against the real binary)."""

from __future__ import annotations

import asyncio
import json
from typing import Any, Callable, List

import httpx
import pytest

import aquifer
from aquifer import _async, _sync

URL = "http://aquifer.test"


def answer(status: int, body: Any = None, retry_after: str | None = None) -> httpx.Response:
    headers = {"Retry-After": retry_after} if retry_after is not None else {}
    if body is None and status >= 400:
        body = {"error": {"code": f"code_{status}", "message": f"message {status}"}}
    return httpx.Response(status, json=body, headers=headers)


class Script:
    """Answers requests from a list, recording each request."""

    def __init__(self, *answers: Callable[[], httpx.Response]) -> None:
        self.answers = list(answers)
        self.requests: List[httpx.Request] = []

    def __call__(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        return self.answers.pop(0)()


@pytest.fixture
def sleeps(monkeypatch: pytest.MonkeyPatch) -> List[float]:
    recorded: List[float] = []
    monkeypatch.setattr(_sync.time, "sleep", recorded.append)

    async def no_wait(seconds: float) -> None:
        recorded.append(seconds)

    monkeypatch.setattr(_async.asyncio, "sleep", no_wait)
    return recorded


def client(script: Script, **kw: Any) -> aquifer.Client:
    return aquifer.Client(URL, "s", transport=httpx.MockTransport(script), **kw)


def refused() -> httpx.Response:
    raise httpx.ConnectError("connection refused")


def test_503_and_429_are_retried_honouring_retry_after(sleeps: List[float]) -> None:
    script = Script(
        lambda: answer(503, retry_after="1"),
        lambda: answer(429, retry_after="2"),
        lambda: answer(503),  # no Retry-After: backoff
        lambda: answer(200, {"projects": []}),
    )
    assert client(script).usage() == {"projects": []}
    assert len(script.requests) == 4
    assert sleeps[:2] == [1.0, 2.0] and 0 < sleeps[2] <= 0.4


@pytest.mark.parametrize("status", [400, 401, 403, 404, 409, 413])
def test_other_4xx_are_never_retried(status: int, sleeps: List[float]) -> None:
    script = Script(lambda: answer(status), lambda: answer(200, {}))
    with pytest.raises(aquifer.APIError) as e:
        client(script).usage()
    assert e.value.status == status and e.value.code == f"code_{status}"
    assert e.value.message == f"message {status}"
    assert len(script.requests) == 1 and sleeps == []


def test_classes_per_status_family() -> None:
    expected = {
        400: aquifer.BadRequest, 401: aquifer.Unauthorized, 403: aquifer.Forbidden,
        404: aquifer.NotFound, 409: aquifer.Conflict, 413: aquifer.PayloadTooLarge,
        429: aquifer.TooManyRequests, 500: aquifer.InternalError, 503: aquifer.Unavailable,
        504: aquifer.GatewayTimeout,
    }
    for status, cls in expected.items():
        policy = aquifer.RetryPolicy(max_retries=0)
        with pytest.raises(cls) as e:
            client(Script(lambda: answer(status)), retry=policy).usage()
        assert isinstance(e.value, aquifer.APIError) and e.value.status == status
    assert issubclass(aquifer.Unavailable, aquifer.ServerError)


def test_a_retry_after_beyond_the_limit_is_raised_at_once(sleeps: List[float]) -> None:
    script = Script(lambda: answer(429, retry_after="86400"))
    with pytest.raises(aquifer.TooManyRequests) as e:
        client(script).usage()
    assert e.value.retry_after == 86400 and len(script.requests) == 1 and sleeps == []


def test_retries_give_up_after_max_retries(sleeps: List[float]) -> None:
    script = Script(*[lambda: answer(503)] * 4)
    with pytest.raises(aquifer.Unavailable):
        client(script, retry=aquifer.RetryPolicy(max_retries=3)).usage()
    assert len(script.requests) == 4 and len(sleeps) == 3
    script = Script(*[refused] * 3)
    with pytest.raises(aquifer.ConnectionFailed):
        client(script, retry=aquifer.RetryPolicy(max_retries=2)).usage()
    assert len(script.requests) == 3


def test_a_retried_write_keeps_its_idempotency_key(sleeps: List[float]) -> None:
    ack = {"write_id": "w1", "records": 3}
    script = Script(refused, lambda: answer(503, retry_after="0"), lambda: answer(202, ack),
                    lambda: answer(202, dict(ack, write_id="w2")))
    result = client(script).write("p.t", [{"a": i} for i in range(5)], batch_records=3, wait="index")
    assert result.write_ids == ["w1", "w2"] and result.records == 5
    keys = [r.headers["Idempotency-Key"] for r in script.requests]
    assert keys[0] == keys[1] == keys[2] and keys[3] != keys[0]
    assert script.requests[0].headers["Content-Type"] == "application/x-ndjson"
    assert script.requests[0].url.params["wait"] == "index"
    assert [json.loads(line) for line in script.requests[0].content.splitlines()] == [{"a": 0}, {"a": 1}, {"a": 2}]


def test_the_async_client_retries_the_same_way(sleeps: List[float]) -> None:
    script = Script(refused, lambda: answer(503, retry_after="1"), lambda: answer(202, {"write_id": "w", "records": 1}),
                    lambda: answer(400))

    async def main() -> None:
        async with aquifer.AsyncClient(URL, "s", transport=httpx.MockTransport(script)) as c:
            assert (await c.write("p.t", [{"a": 1}])).write_ids == ["w"]
            with pytest.raises(aquifer.BadRequest):
                await c.usage()

    asyncio.run(main())
    keys = {r.headers["Idempotency-Key"] for r in script.requests[:3]}
    assert len(keys) == 1 and len(script.requests) == 4 and sleeps[1] == 1.0


def test_records_are_converted_for_json() -> None:
    import datetime
    import decimal
    import uuid

    import numpy as np
    import pandas as pd

    from aquifer import _core

    frame = pd.DataFrame(
        {
            "n": np.array([1, 2], dtype=np.int32),
            "x": [0.1, np.nan],
            "at": pd.to_datetime(["2026-01-01T00:00:00Z", None]),
            "tags": [["a"], []],
        }
    )
    assert list(_core.iter_records(frame)) == [
        {"n": 1, "x": 0.1, "at": 1767225600000, "tags": ["a"]},
        {"n": 2, "x": None, "at": None, "tags": []},
    ]
    line = _core.encode_record(
        {
            "d": decimal.Decimal("12.30"),
            "u": uuid.UUID(int=1),
            "t": datetime.datetime(2026, 1, 1, tzinfo=datetime.timezone.utc),
            "s": "ü",
        },
        0,
    )
    assert json.loads(line) == {"d": "12.30", "u": str(uuid.UUID(int=1)), "t": 1767225600000, "s": "ü"}
