"""The asyncio client: :class:`AsyncClient` and its :class:`AsyncSubscription`.

The same methods as :class:`aquifer.Client`, as coroutines (iterators are async)."""

from __future__ import annotations

import asyncio
import collections
import json
import time
from typing import Any, AsyncIterator, Deque, Dict, Iterable, List, Mapping, Optional, Sequence, Tuple, Union

import httpx
import websockets.asyncio.client
import websockets.exceptions

from . import _core
from ._core import (
    Batch,
    Filter,
    Limits,
    Page,
    Record,
    RetryPolicy,
    SchemaSource,
    SqlResult,
    Wait,
    WriteResult,
)
from ._errors import (
    APIError,
    ConnectionFailed,
    JobFailed,
    JobTimeout,
    PayloadTooLarge,
    error_from_ws,
)
from ._sync import _OK, _filter_obj, _filter_text, _table_body
from ._version import __version__


class AsyncClient:
    """An asyncio client of one Aquifer server; see :class:`aquifer.Client` for the
    arguments and the behaviour of each method. ``async with AsyncClient() as c: ...``"""

    def __init__(
        self,
        url: Optional[str] = None,
        secret: Optional[str] = None,
        *,
        timeout: float = 60.0,
        retry: Optional[RetryPolicy] = None,
        batch_records: int = 1000,
        max_batch_bytes: int = 16 << 20,
        transport: Optional[httpx.AsyncBaseTransport] = None,
    ) -> None:
        self.url = _core.resolve_url(url)
        self.secret = _core.resolve_secret(secret)
        self.retry = retry or RetryPolicy()
        self.timeout = timeout
        self._limits = Limits(batch_records, max_batch_bytes)
        headers = {"User-Agent": f"aquifer-client-python/{__version__}"}
        if self.secret:
            headers["Authorization"] = f"Bearer {self.secret}"
        self._http = httpx.AsyncClient(
            base_url=self.url, headers=headers, timeout=timeout, transport=transport
        )

    async def aclose(self) -> None:
        await self._http.aclose()

    async def __aenter__(self) -> "AsyncClient":
        return self

    async def __aexit__(self, *exc: Any) -> None:
        await self.aclose()

    async def _request(
        self,
        method: str,
        path: str,
        *,
        params: Optional[Mapping[str, Any]] = None,
        json_body: Any = None,
        content: Optional[bytes] = None,
        headers: Optional[Mapping[str, str]] = None,
        retry: bool = True,
    ) -> Any:
        clean = {k: v for k, v in (params or {}).items() if v is not None}
        attempt = 0
        while True:
            try:
                response = await self._http.request(
                    method, path, params=clean, json=json_body, content=content, headers=headers
                )
            except httpx.TransportError as e:
                if not retry or attempt >= self.retry.max_retries:
                    raise ConnectionFailed(f"cannot reach {self.url}: {e!r}") from e
                await asyncio.sleep(self.retry.delay(attempt, None))
                attempt += 1
                continue
            if response.status_code in _OK:
                return _core.decode_body(response.content)
            err = _core.error_for(
                response.status_code, response.content, response.headers.get("Retry-After")
            )
            if (
                retry
                and _core.should_retry(response.status_code)
                and attempt < self.retry.max_retries
                and (err.retry_after is None or err.retry_after <= self.retry.max_retry_after)
            ):
                await asyncio.sleep(self.retry.delay(attempt, err.retry_after))
                attempt += 1
                continue
            raise err

    # ------------------------------------------------------------ server

    async def health(self) -> Dict[str, Any]:
        return await self._request("GET", "/healthz", retry=False)  # type: ignore[no-any-return]

    async def openapi(self) -> Dict[str, Any]:
        return await self._request("GET", "/openapi.json")  # type: ignore[no-any-return]

    # ------------------------------------------------------------ projects and tables

    async def create_project(self, name: str) -> Dict[str, Any]:
        return await self._request("POST", "/v1/projects", json_body={"name": name})  # type: ignore[no-any-return]

    async def create_table(
        self,
        table: str,
        schema: SchemaSource,
        key: Union[str, Sequence[str]],
        *,
        use_log: Optional[bool] = None,
        use_index: Optional[bool] = None,
        use_warehouse: Optional[bool] = None,
        log_retention_ms: Optional[int] = None,
        index_retention_ms: Optional[int] = None,
        warehouse_retention_ms: Optional[int] = None,
    ) -> Dict[str, Any]:
        project, name = _core.split_table(table)
        body = _table_body(
            name,
            schema,
            key,
            dict(
                use_log=use_log,
                use_index=use_index,
                use_warehouse=use_warehouse,
                log_retention_ms=log_retention_ms,
                index_retention_ms=index_retention_ms,
                warehouse_retention_ms=warehouse_retention_ms,
            ),
        )
        return await self._request(  # type: ignore[no-any-return]
            "POST", f"/v1/projects/{_core.seg(project)}/tables", json_body=body
        )

    async def describe_table(self, table: str) -> Dict[str, Any]:
        return await self._request("GET", _core.table_path(table))  # type: ignore[no-any-return]

    async def delete_table(self, table: str) -> None:
        await self._request("DELETE", _core.table_path(table))

    # ------------------------------------------------------------ writes

    async def write(
        self,
        table: str,
        records: Union[Iterable[Mapping[str, Any]], Any],
        *,
        wait: Wait = None,
        batch_records: Optional[int] = None,
        max_batch_bytes: Optional[int] = None,
        idempotency_key: Optional[str] = None,
    ) -> WriteResult:
        """See :meth:`aquifer.Client.write`. ``records`` may also be an async iterable."""
        path = _core.table_path(table) + "/records"
        limits = self._limits
        if batch_records is not None or max_batch_bytes is not None:
            limits = Limits(batch_records or limits.records, max_batch_bytes or limits.body_bytes)
        params = {"wait": _core.wait_param(wait)}
        result = WriteResult()
        if hasattr(records, "__aiter__"):
            source: Iterable[Any] = [r async for r in records]
        else:
            source = _core.iter_records(records)
        for planned in _core.plan_batches(source, limits, idempotency_key):
            queue: List[Batch] = [planned]
            while queue:
                batch = queue.pop(0)
                try:
                    body = await self._request(
                        "POST",
                        path,
                        params=params,
                        content=batch.body,
                        headers={
                            "Content-Type": "application/x-ndjson",
                            "Idempotency-Key": batch.key,
                        },
                    )
                except PayloadTooLarge as e:
                    if len(batch) > 1 and limits.learn(e):
                        if limits is not self._limits:
                            self._limits.learn(e)
                        queue = _core.split_batch(batch, limits, idempotency_key) + queue
                        continue
                    raise _core.annotate_write_error(e, batch, result.records)
                except APIError as e:
                    raise _core.annotate_write_error(e, batch, result.records)
                _core.record_write(result, batch, body)
        return result

    # ------------------------------------------------------------ reads

    async def query(
        self, table: str, filter: Union[Filter, str, None] = None, limit: Optional[int] = None
    ) -> Page:
        body = await self._request(
            "GET",
            _core.table_path(table) + "/records",
            params={"filter": _filter_text(filter), "limit": limit},
        )
        return Page.from_json(body)

    async def log(
        self, table: str, from_ms: Optional[int] = None, limit: Optional[int] = None
    ) -> Page:
        body = await self._request(
            "GET", _core.table_path(table) + "/log", params={"from": from_ms, "limit": limit}
        )
        return Page.from_json(body)

    async def page(self, cursor: str, limit: Optional[int] = None) -> Page:
        body = await self._request("GET", "/v1/cursor", params={"cursor": cursor, "limit": limit})
        return Page.from_json(body)

    async def pages(self, first: Union[Page, str], limit: Optional[int] = None) -> AsyncIterator[Page]:
        page = first if isinstance(first, Page) else await self.page(first, limit)
        while True:
            yield page
            if not page.next_cursor:
                return
            page = await self.page(page.next_cursor, limit)

    async def iter_cursor(self, cursor: str, limit: Optional[int] = None) -> AsyncIterator[Any]:
        async for page in self.pages(cursor, limit):
            for item in page.data:
                yield item

    async def iter_query(
        self, table: str, filter: Union[Filter, str, None] = None, page_size: Optional[int] = None
    ) -> AsyncIterator[Record]:
        async for page in self.pages(await self.query(table, filter, page_size), page_size):
            for item in page.data:
                yield item

    async def iter_log(
        self, table: str, from_ms: Optional[int] = None, page_size: Optional[int] = None
    ) -> AsyncIterator[Record]:
        async for page in self.pages(await self.log(table, from_ms, page_size), page_size):
            for item in page.data:
                yield item

    async def change_cursor(self, table: str, filter: Union[Filter, str, None] = None) -> str:
        cursor = (await self.query(table, filter, limit=1)).change_cursor
        if not cursor:
            raise APIError(0, "no_change_cursor", f"the server gave no change cursor for {table}")
        return cursor

    def subscribe(
        self,
        table: Optional[str] = None,
        *,
        filter: Union[Filter, str, None] = None,
        cursor: Optional[str] = None,
        timeout: Optional[float] = None,
        reconnect_timeout: float = 60.0,
    ) -> "AsyncSubscription":
        """An async iterator of changes; see :meth:`aquifer.Client.subscribe`.

        ``async with client.subscribe("demo.events") as sub: async for record in sub: ...``
        (or ``async for`` on it directly). Without ``cursor``, the feed starts when the
        subscription is entered or first iterated; to pin an earlier moment, pass
        ``cursor=await client.change_cursor(table)``."""
        if cursor is None and table is None:
            raise ValueError("subscribe needs a table or a cursor")
        return AsyncSubscription(self, table, cursor, filter, timeout, reconnect_timeout)

    # ------------------------------------------------------------ SQL

    async def sql_dry_run(self, query: str) -> Dict[str, Any]:
        return await self._request(  # type: ignore[no-any-return]
            "POST", "/v1/sql", json_body={"query": query, "dry_run": True}
        )

    async def start_sql(self, query: str) -> str:
        body = await self._request("POST", "/v1/sql", json_body={"query": query})
        return str(body["job_id"])

    async def job(self, job_id: str) -> Dict[str, Any]:
        return await self._request("GET", f"/v1/jobs/{_core.seg(job_id)}")  # type: ignore[no-any-return]

    async def wait_job(self, job_id: str, timeout: Optional[float] = 300.0) -> Dict[str, Any]:
        deadline = None if timeout is None else time.monotonic() + timeout
        delay = 0.01
        while True:
            status = await self.job(job_id)
            if status.get("status") == "done":
                return status
            if status.get("status") == "failed":
                raise JobFailed(job_id, str(status.get("error")))
            if deadline is not None and time.monotonic() + delay > deadline:
                raise JobTimeout(job_id, timeout or 0)
            await asyncio.sleep(delay)
            delay = min(1.0, delay * 2)

    async def job_rows(
        self, job_id: str, cursor: Optional[str] = None, limit: Optional[int] = None
    ) -> Page:
        body = await self._request(
            "GET", f"/v1/jobs/{_core.seg(job_id)}/rows", params={"cursor": cursor, "limit": limit}
        )
        return Page.from_json(body)

    async def run_sql(self, query: str, *, wait_ms: int = 10_000, limit: int = 1000) -> Dict[str, Any]:
        body = {"query": query, "wait_ms": wait_ms, "limit": limit}
        return await self._request("POST", "/v1/sql", json_body=body)  # type: ignore[no-any-return]

    async def sql(
        self, query: str, *, timeout: Optional[float] = 300.0, page_size: int = 1000
    ) -> SqlResult:
        page_size = max(1, min(1000, page_size))
        started = time.monotonic()
        answer = await self.run_sql(query, wait_ms=_core.sql_wait_ms(timeout), limit=page_size)
        job_id = str(answer["job_id"])
        if answer.get("status") == "failed":
            raise JobFailed(job_id, str(answer.get("error")))
        if answer.get("status") == "done" and "columns" in answer:
            status, first = answer, Page.from_json(answer)
        else:
            left = None if timeout is None else max(0.0, timeout - (time.monotonic() - started))
            status = await self.wait_job(job_id, left)
            first = await self.job_rows(job_id, limit=page_size)
        rows: List[List[Any]] = []
        async for page in self.pages(first, page_size):
            rows.extend(page.data)
        return SqlResult(job_id, first.columns or [], rows, int(status.get("bytes_scanned") or 0))

    async def sql_df(self, query: str, *, timeout: Optional[float] = 300.0) -> Any:
        _core.require_pandas()
        return (await self.sql(query, timeout=timeout)).to_pandas()

    # ------------------------------------------------------------ secrets, usage, quotas

    async def create_secret(
        self,
        project: str,
        *,
        read: Optional[Sequence[str]] = None,
        write: Optional[Sequence[str]] = None,
        manage: bool = False,
    ) -> str:
        body: Dict[str, Any] = {"read": list(read or []), "manage": manage}
        if write is not None:
            body["write"] = list(write)
        answer = await self._request(
            "POST", f"/v1/projects/{_core.seg(project)}/secrets", json_body=body
        )
        return str(answer["secret"])

    async def usage(self) -> Dict[str, Any]:
        return await self._request("GET", "/v1/usage")  # type: ignore[no-any-return]

    async def quotas(self, project: str) -> Dict[str, Any]:
        return await self._request("GET", f"/v1/projects/{_core.seg(project)}/quotas")  # type: ignore[no-any-return]

    async def set_quotas(self, project: str, **limits: Optional[int]) -> Dict[str, Any]:
        return await self._request(  # type: ignore[no-any-return]
            "PUT", f"/v1/projects/{_core.seg(project)}/quotas", json_body=limits
        )


class AsyncSubscription:
    """A live feed of changes as an async iterator (from :meth:`AsyncClient.subscribe`);
    see :class:`aquifer.Subscription`. Reconnects from the last batch's cursor after a
    drop, so no change is lost or repeated."""

    def __init__(
        self,
        client: AsyncClient,
        table: Optional[str],
        cursor: Optional[str],
        filter: Union[Filter, str, None],
        timeout: Optional[float],
        reconnect_timeout: float,
    ) -> None:
        self._client = client
        self._table = table
        self.cursor = cursor
        # A change cursor read here carries the filter; a given cursor gets it in the message.
        self._query_filter = filter if cursor is None else None
        self._filter = None if cursor is None else _filter_obj(filter)
        self._timeout = timeout
        self._reconnect_timeout = reconnect_timeout
        self._ws: Optional[websockets.asyncio.client.ClientConnection] = None
        self._closed = False
        self._connected_once = False
        self._failing_since: Optional[float] = None  # start of a run of failed connections
        self._pending: Deque[Record] = collections.deque()
        self._pending_cursor: Optional[str] = cursor
        self.reconnects = 0

    async def __aenter__(self) -> "AsyncSubscription":
        await self._ensure_cursor()
        return self

    async def __aexit__(self, *exc: Any) -> None:
        await self.aclose()

    async def _ensure_cursor(self) -> str:
        if self.cursor is None:
            assert self._table is not None
            self.cursor = await self._client.change_cursor(self._table, self._query_filter)
        return self.cursor

    async def aclose(self) -> None:
        self._closed = True
        ws, self._ws = self._ws, None
        if ws is not None:
            await ws.close()

    async def _drop(self) -> None:
        """Drops the connection (no close handshake) without closing the subscription."""
        ws, self._ws = self._ws, None
        if ws is not None:
            ws.transport.abort()
            try:
                await ws.close()
            except Exception:  # noqa: BLE001 - the socket is gone already
                pass

    async def _open(self) -> websockets.asyncio.client.ClientConnection:
        headers = {}
        if self._client.secret:
            headers["Authorization"] = f"Bearer {self._client.secret}"
        ws = await websockets.asyncio.client.connect(
            _core.ws_url(self._client.url),
            additional_headers=headers,
            open_timeout=min(10.0, self._client.timeout),
            max_size=None,
        )
        message: Dict[str, Any] = {"type": "subscribe", "cursor": self.cursor}
        if self._filter is not None:
            message["filter"] = self._filter
        try:
            await ws.send(json.dumps(message))
        except BaseException:
            await ws.close()
            raise
        return ws

    async def _connect(self) -> websockets.asyncio.client.ClientConnection:
        if self._failing_since is None:
            self._failing_since = time.monotonic()
        started = self._failing_since
        attempt = 0
        policy = self._client.retry
        while True:
            retry_after: Optional[float] = None
            try:
                return await self._open()
            except websockets.exceptions.InvalidStatus as e:
                status = e.response.status_code
                err = _core.error_for(
                    status, e.response.body or b"", e.response.headers.get("Retry-After")
                )
                if not _core.should_retry(status):
                    raise err from None
                retry_after = err.retry_after
                last: BaseException = err
            except (OSError, asyncio.TimeoutError, websockets.exceptions.WebSocketException) as e:
                last = e
            delay = policy.delay(attempt, retry_after)
            if time.monotonic() + delay - started > self._reconnect_timeout:
                if isinstance(last, APIError):
                    raise last
                raise ConnectionFailed(
                    f"cannot open a subscription on {self._client.url}: {last!r}"
                ) from last
            await asyncio.sleep(delay)
            attempt += 1

    async def _next_message(self) -> Optional[Dict[str, Any]]:
        await self._ensure_cursor()
        while True:
            if self._closed:
                return None
            if self._ws is None:
                if self._connected_once:
                    self.reconnects += 1
                self._ws = await self._connect()
                self._connected_once = True
            try:
                if self._timeout is None:
                    raw = await self._ws.recv()
                else:
                    raw = await asyncio.wait_for(self._ws.recv(), self._timeout)
            except asyncio.TimeoutError:
                raise TimeoutError(f"no change arrived within {self._timeout:g} s") from None
            except websockets.exceptions.ConnectionClosed:
                if self._closed:
                    return None
                self._ws = None
                if self._failing_since is None:
                    self._failing_since = time.monotonic()
                continue
            message = json.loads(raw)
            if message.get("type") == "error":
                err = error_from_ws(message.get("error"))
                if err.code == "unavailable":  # transient on the server: resume
                    await self._drop()
                    await asyncio.sleep(self._client.retry.delay(0, None))
                    continue
                await self.aclose()
                raise err
            if message.get("type") == "records":
                self._failing_since = None
                return message  # type: ignore[no-any-return]

    async def _fill(self) -> bool:
        while not self._pending:
            message = await self._next_message()
            if message is None:
                return False
            data = list(message.get("data") or [])
            cursor = str(message.get("cursor") or self.cursor)
            if data:
                self._pending = collections.deque(data)
                self._pending_cursor = cursor
            else:
                self.cursor = cursor
        return True

    async def batches(self) -> AsyncIterator[List[Record]]:
        """Each batch as the server sent it (first what is left of one partly read);
        :attr:`cursor` resumes after it."""
        while await self._fill():
            batch = list(self._pending)
            self._pending.clear()
            self.cursor = self._pending_cursor
            yield batch

    def __aiter__(self) -> "AsyncSubscription":
        return self

    async def __anext__(self) -> Record:
        """The next record; :attr:`cursor` moves past a batch with its last record."""
        if not await self._fill():
            raise StopAsyncIteration
        record = self._pending.popleft()
        if not self._pending:
            self.cursor = self._pending_cursor
        return record
