"""The blocking client: :class:`Client` and its :class:`Subscription`."""

from __future__ import annotations

import collections
import json
import time
from typing import Any, Deque, Dict, Iterable, Iterator, List, Mapping, Optional, Sequence, Union

import httpx
import websockets.exceptions
import websockets.sync.client

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
from ._version import __version__

_OK = (200, 201, 202, 204)


def _filter_text(filter: Union[Filter, str, None]) -> Optional[str]:
    if filter is None:
        return None
    return filter if isinstance(filter, str) else json.dumps(filter, separators=(",", ":"))


def _filter_obj(filter: Union[Filter, str, None]) -> Optional[Any]:
    if filter is None:
        return None
    return json.loads(filter) if isinstance(filter, str) else dict(filter)


def _table_body(
    name: str,
    schema: SchemaSource,
    key: Union[str, Sequence[str]],
    options: Mapping[str, Any],
) -> Dict[str, Any]:
    keys = [k.strip() for k in key.split(",")] if isinstance(key, str) else list(key)
    body: Dict[str, Any] = {"name": name, "schema": _core.load_schema(schema), "key": keys}
    for option, value in options.items():
        if value is not None:
            body[option] = value
    return body


class Client:
    """A blocking client of one Aquifer server.

    ``url`` defaults to ``AQUIFER_URL`` (else ``http://127.0.0.1:8080``), ``secret`` to
    ``AQUIFER_SECRET``. Answers with an error status raise the :class:`APIError`
    subclass of their status; 503, 429 and connection errors are retried per
    ``retry`` (:class:`RetryPolicy`). Use it as a context manager, or call :meth:`close`.
    """

    def __init__(
        self,
        url: Optional[str] = None,
        secret: Optional[str] = None,
        *,
        timeout: float = 60.0,
        retry: Optional[RetryPolicy] = None,
        batch_records: int = 1000,
        max_batch_bytes: int = 16 << 20,
        transport: Optional[httpx.BaseTransport] = None,
    ) -> None:
        self.url = _core.resolve_url(url)
        self.secret = _core.resolve_secret(secret)
        self.retry = retry or RetryPolicy()
        self.timeout = timeout
        self._limits = Limits(batch_records, max_batch_bytes)
        headers = {"User-Agent": f"aquifer-client-python/{__version__}"}
        if self.secret:
            headers["Authorization"] = f"Bearer {self.secret}"
        self._http = httpx.Client(
            base_url=self.url, headers=headers, timeout=timeout, transport=transport
        )

    # ------------------------------------------------------------ plumbing

    def close(self) -> None:
        self._http.close()

    def __enter__(self) -> "Client":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    def _request(
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
        """Sends one request with retries; returns the parsed JSON answer (None if empty)."""
        clean = {k: v for k, v in (params or {}).items() if v is not None}
        attempt = 0
        while True:
            try:
                response = self._http.request(
                    method, path, params=clean, json=json_body, content=content, headers=headers
                )
            except httpx.TransportError as e:
                if not retry or attempt >= self.retry.max_retries:
                    raise ConnectionFailed(f"cannot reach {self.url}: {e!r}") from e
                time.sleep(self.retry.delay(attempt, None))
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
                time.sleep(self.retry.delay(attempt, err.retry_after))
                attempt += 1
                continue
            raise err

    # ------------------------------------------------------------ server

    def health(self) -> Dict[str, Any]:
        """``GET /healthz`` (no secret needed); an unhealthy server raises :class:`Unavailable`."""
        return self._request("GET", "/healthz", retry=False)  # type: ignore[no-any-return]

    def openapi(self) -> Dict[str, Any]:
        return self._request("GET", "/openapi.json")  # type: ignore[no-any-return]

    # ------------------------------------------------------------ projects and tables

    def create_project(self, name: str) -> Dict[str, Any]:
        """Creates a project (admin secret). 409 :class:`Conflict` if it exists."""
        return self._request("POST", "/v1/projects", json_body={"name": name})  # type: ignore[no-any-return]

    def create_table(
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
        """Creates ``"project.table"`` from an Avro record schema (a dict, JSON text or the
        path of an ``.avsc`` file) and its key fields (a list, or ``"a,b"``)."""
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
        return self._request(  # type: ignore[no-any-return]
            "POST", f"/v1/projects/{_core.seg(project)}/tables", json_body=body
        )

    def describe_table(self, table: str) -> Dict[str, Any]:
        """The table's description: schema, key, instance, stores, retention."""
        return self._request("GET", _core.table_path(table))  # type: ignore[no-any-return]

    def delete_table(self, table: str) -> None:
        self._request("DELETE", _core.table_path(table))

    # ------------------------------------------------------------ writes

    def write(
        self,
        table: str,
        records: Union[Iterable[Mapping[str, Any]], Any],
        *,
        wait: Wait = None,
        batch_records: Optional[int] = None,
        max_batch_bytes: Optional[int] = None,
        idempotency_key: Optional[str] = None,
    ) -> WriteResult:
        """Writes records (a list or iterable of dicts, or a pandas DataFrame) in batches.

        Each batch is one request of at most ``batch_records`` records and
        ``max_batch_bytes`` bytes (the client's defaults, lowered to the server's limits
        when a 413 names them: the batch is then split and sent again). Every batch
        carries an ``Idempotency-Key`` kept across its retries, so a retried batch is
        stored once; ``idempotency_key`` makes the keys deterministic
        (``<key>:<first record>+<count>``), so rerunning the same call skips batches
        already written. ``wait`` names stores (``"index"``, ``["log", "warehouse"]``)
        that must have each batch before it is answered.

        A refused batch raises its error with ``written`` = records of earlier batches
        (stored); nothing of the refused batch was written.
        """
        path = _core.table_path(table) + "/records"
        limits = self._limits
        if batch_records is not None or max_batch_bytes is not None:
            limits = Limits(batch_records or limits.records, max_batch_bytes or limits.body_bytes)
        params = {"wait": _core.wait_param(wait)}
        result = WriteResult()
        for planned in _core.plan_batches(_core.iter_records(records), limits, idempotency_key):
            queue: List[Batch] = [planned]
            while queue:
                batch = queue.pop(0)
                try:
                    body = self._request(
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

    def query(
        self, table: str, filter: Union[Filter, str, None] = None, limit: Optional[int] = None
    ) -> Page:
        """One page of the index (the latest record per key), optionally filtered, e.g.
        ``{"user": "ada", "ts": {"_gte": 5}}``."""
        body = self._request(
            "GET",
            _core.table_path(table) + "/records",
            params={"filter": _filter_text(filter), "limit": limit},
        )
        return Page.from_json(body)

    def log(self, table: str, from_ms: Optional[int] = None, limit: Optional[int] = None) -> Page:
        """One page of the log (every write, in write order), from a timestamp (ms)."""
        body = self._request(
            "GET", _core.table_path(table) + "/log", params={"from": from_ms, "limit": limit}
        )
        return Page.from_json(body)

    def page(self, cursor: str, limit: Optional[int] = None) -> Page:
        """The page a cursor points to (records or SQL job rows)."""
        body = self._request("GET", "/v1/cursor", params={"cursor": cursor, "limit": limit})
        return Page.from_json(body)

    def pages(self, first: Union[Page, str], limit: Optional[int] = None) -> Iterator[Page]:
        """Every page from ``first`` (a page, or a cursor) on, following ``next_cursor``."""
        page = first if isinstance(first, Page) else self.page(first, limit)
        while True:
            yield page
            if not page.next_cursor:
                return
            page = self.page(page.next_cursor, limit)

    def iter_cursor(self, cursor: str, limit: Optional[int] = None) -> Iterator[Any]:
        """Every item of every page of a cursor."""
        for page in self.pages(cursor, limit):
            yield from page.data

    def iter_query(
        self, table: str, filter: Union[Filter, str, None] = None, page_size: Optional[int] = None
    ) -> Iterator[Record]:
        """Every record of an index query, page after page."""
        for page in self.pages(self.query(table, filter, page_size), page_size):
            yield from page.data

    def iter_log(
        self, table: str, from_ms: Optional[int] = None, page_size: Optional[int] = None
    ) -> Iterator[Record]:
        """Every record of the log from ``from_ms``, in write order."""
        for page in self.pages(self.log(table, from_ms, page_size), page_size):
            yield from page.data

    def change_cursor(self, table: str, filter: Union[Filter, str, None] = None) -> str:
        """A change cursor from now on (of an index query with ``filter``)."""
        cursor = self.query(table, filter, limit=1).change_cursor
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
    ) -> "Subscription":
        """Changes of a table as they are written, from now on (or from ``cursor``: a
        change cursor, or the :attr:`Subscription.cursor` of an earlier subscription).

        Iterate it for records (or :meth:`Subscription.batches`). A dropped connection is
        reopened from the last batch's cursor, so nothing is lost or repeated; it gives
        up after ``reconnect_timeout`` seconds without a connection. ``timeout``: raise
        :class:`TimeoutError` when no batch arrives for that long (None: wait forever).
        """
        if cursor is None:
            if table is None:
                raise ValueError("subscribe needs a table or a cursor")
            cursor = self.change_cursor(table, filter)
            message_filter = None  # carried by the change cursor
        else:
            message_filter = _filter_obj(filter)
        return Subscription(self, cursor, message_filter, timeout, reconnect_timeout)

    # ------------------------------------------------------------ SQL

    def sql_dry_run(self, query: str) -> Dict[str, Any]:
        """``{"tables","bytes_scanned_estimate"}`` without running the query."""
        return self._request(  # type: ignore[no-any-return]
            "POST", "/v1/sql", json_body={"query": query, "dry_run": True}
        )

    def start_sql(self, query: str) -> str:
        """Starts a SQL job and returns its id."""
        body = self._request("POST", "/v1/sql", json_body={"query": query})
        return str(body["job_id"])

    def job(self, job_id: str) -> Dict[str, Any]:
        """``{"job_id","status","error","bytes_scanned","rows"}``."""
        return self._request("GET", f"/v1/jobs/{_core.seg(job_id)}")  # type: ignore[no-any-return]

    def wait_job(self, job_id: str, timeout: Optional[float] = 300.0) -> Dict[str, Any]:
        """Polls a job (10 ms doubling to 1 s) until done; a failed job raises :class:`JobFailed`."""
        deadline = None if timeout is None else time.monotonic() + timeout
        delay = 0.01
        while True:
            status = self.job(job_id)
            if status.get("status") == "done":
                return status
            if status.get("status") == "failed":
                raise JobFailed(job_id, str(status.get("error")))
            if deadline is not None and time.monotonic() + delay > deadline:
                raise JobTimeout(job_id, timeout or 0)
            time.sleep(delay)
            delay = min(1.0, delay * 2)

    def job_rows(self, job_id: str, cursor: Optional[str] = None, limit: Optional[int] = None) -> Page:
        """One page of a finished job's rows (``columns`` set)."""
        body = self._request(
            "GET", f"/v1/jobs/{_core.seg(job_id)}/rows", params={"cursor": cursor, "limit": limit}
        )
        return Page.from_json(body)

    def run_sql(self, query: str, *, wait_ms: int = 10_000, limit: int = 1000) -> Dict[str, Any]:
        """``POST /v1/sql`` with ``wait_ms``: the job's status once it finished (or ``wait_ms``
        passed) and, when done, its first ``limit`` rows (``columns``, ``data``, ``next_cursor``)."""
        body = {"query": query, "wait_ms": wait_ms, "limit": limit}
        return self._request("POST", "/v1/sql", json_body=body)  # type: ignore[no-any-return]

    def sql(self, query: str, *, timeout: Optional[float] = 300.0, page_size: int = 1000) -> SqlResult:
        """Runs a query, waits for it and fetches every row. The server answers a quick query's
        first page with the submission (``wait_ms``); a slower job is polled."""
        page_size = max(1, min(1000, page_size))
        started = time.monotonic()
        answer = self.run_sql(query, wait_ms=_core.sql_wait_ms(timeout), limit=page_size)
        job_id = str(answer["job_id"])
        if answer.get("status") == "failed":
            raise JobFailed(job_id, str(answer.get("error")))
        if answer.get("status") == "done" and "columns" in answer:
            status, first = answer, Page.from_json(answer)
        else:
            left = None if timeout is None else max(0.0, timeout - (time.monotonic() - started))
            status = self.wait_job(job_id, left)
            first = self.job_rows(job_id, limit=page_size)
        rows: List[List[Any]] = []
        for page in self.pages(first, page_size):
            rows.extend(page.data)
        return SqlResult(job_id, first.columns or [], rows, int(status.get("bytes_scanned") or 0))

    def sql_df(self, query: str, *, timeout: Optional[float] = 300.0) -> Any:
        """Runs a query and returns a ``pandas.DataFrame`` (needs the ``pandas`` extra)."""
        _core.require_pandas()
        return self.sql(query, timeout=timeout).to_pandas()

    # ------------------------------------------------------------ secrets, usage, quotas

    def create_secret(
        self,
        project: str,
        *,
        read: Optional[Sequence[str]] = None,
        write: Optional[Sequence[str]] = None,
        manage: bool = False,
    ) -> str:
        """Mints a secret scoped to ``project`` (tables by name, ``"*"`` for all, also
        later ones) and returns it (the server shows it once)."""
        body: Dict[str, Any] = {"read": list(read or []), "manage": manage}
        if write is not None:
            body["write"] = list(write)
        answer = self._request("POST", f"/v1/projects/{_core.seg(project)}/secrets", json_body=body)
        return str(answer["secret"])

    def usage(self) -> Dict[str, Any]:
        """Usage counters (hour and month) of the caller's projects and secret."""
        return self._request("GET", "/v1/usage")  # type: ignore[no-any-return]

    def quotas(self, project: str) -> Dict[str, Any]:
        """A project's monthly byte quotas (admin; None = unlimited)."""
        return self._request("GET", f"/v1/projects/{_core.seg(project)}/quotas")  # type: ignore[no-any-return]

    def set_quotas(self, project: str, **limits: Optional[int]) -> Dict[str, Any]:
        """Sets some of ``read_bytes``, ``write_bytes``, ``scan_bytes`` (None = unlimited)."""
        return self._request(  # type: ignore[no-any-return]
            "PUT", f"/v1/projects/{_core.seg(project)}/quotas", json_body=limits
        )


class Subscription:
    """A live feed of changes (from :meth:`Client.subscribe`). Iterate it for records, or
    :meth:`batches` for lists; :attr:`cursor` resumes right after the last batch handed
    out completely. Close it (or use ``with``) to free the server's slot."""

    def __init__(
        self,
        client: Client,
        cursor: str,
        filter: Optional[Any],
        timeout: Optional[float],
        reconnect_timeout: float,
    ) -> None:
        self._client = client
        self.cursor = cursor
        self._filter = filter
        self._timeout = timeout
        self._reconnect_timeout = reconnect_timeout
        self._ws: Optional[websockets.sync.client.ClientConnection] = None
        self._closed = False
        self._connected_once = False
        self._failing_since: Optional[float] = None  # start of a run of failed connections
        self._pending: Deque[Record] = collections.deque()
        self._pending_cursor = cursor
        self.reconnects = 0  # connections reopened after a drop

    def __enter__(self) -> "Subscription":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    def close(self) -> None:
        self._closed = True
        ws, self._ws = self._ws, None
        if ws is not None:
            ws.close()

    def _drop(self) -> None:
        """Test hook and recovery: drops the connection without closing the subscription."""
        ws, self._ws = self._ws, None
        if ws is not None:
            try:
                ws.socket.shutdown(2)
            except OSError:
                pass
            ws.close()

    def _open(self) -> websockets.sync.client.ClientConnection:
        headers = {}
        if self._client.secret:
            headers["Authorization"] = f"Bearer {self._client.secret}"
        # __enter__: the connection itself on every version (websockets 17 warns otherwise)
        ws = websockets.sync.client.connect(
            _core.ws_url(self._client.url),
            additional_headers=headers,
            open_timeout=min(10.0, self._client.timeout),
            max_size=None,
        ).__enter__()
        message: Dict[str, Any] = {"type": "subscribe", "cursor": self.cursor}
        if self._filter is not None:
            message["filter"] = self._filter
        try:
            ws.send(json.dumps(message))
        except BaseException:
            ws.close()
            raise
        return ws

    def _connect(self) -> websockets.sync.client.ClientConnection:
        if self._failing_since is None:
            self._failing_since = time.monotonic()
        started = self._failing_since
        attempt = 0
        policy = self._client.retry
        while True:
            retry_after: Optional[float] = None
            try:
                return self._open()
            except websockets.exceptions.InvalidStatus as e:
                status = e.response.status_code
                err = _core.error_for(
                    status, e.response.body or b"", e.response.headers.get("Retry-After")
                )
                if not _core.should_retry(status):
                    raise err from None
                retry_after = err.retry_after
                last: BaseException = err
            except (OSError, TimeoutError, websockets.exceptions.WebSocketException) as e:
                last = e
            delay = policy.delay(attempt, retry_after)
            if time.monotonic() + delay - started > self._reconnect_timeout:
                if isinstance(last, APIError):
                    raise last
                raise ConnectionFailed(
                    f"cannot open a subscription on {self._client.url}: {last!r}"
                ) from last
            time.sleep(delay)
            attempt += 1

    def _next_message(self) -> Dict[str, Any]:
        while True:
            if self._closed:
                raise StopIteration
            if self._ws is None:
                if self._connected_once:
                    self.reconnects += 1
                self._ws = self._connect()
                self._connected_once = True
            try:
                raw = self._ws.recv(timeout=self._timeout)
            except TimeoutError:
                raise TimeoutError(f"no change arrived within {self._timeout:g} s") from None
            except websockets.exceptions.ConnectionClosed:
                if self._closed:
                    raise StopIteration from None
                self._ws = None
                if self._failing_since is None:
                    self._failing_since = time.monotonic()
                continue
            message = json.loads(raw)
            if message.get("type") == "error":
                err = error_from_ws(message.get("error"))
                if err.code == "unavailable":  # transient on the server: resume
                    self._drop()
                    time.sleep(self._client.retry.delay(0, None))
                    continue
                self.close()
                raise err
            if message.get("type") == "records":
                self._failing_since = None
                return message  # type: ignore[no-any-return]

    def _fill(self) -> bool:
        """Waits for the next non-empty batch into the buffer; False once closed."""
        while not self._pending:
            try:
                message = self._next_message()
            except StopIteration:
                return False
            data = list(message.get("data") or [])
            cursor = str(message.get("cursor") or self.cursor)
            if data:
                self._pending = collections.deque(data)
                self._pending_cursor = cursor
            else:
                self.cursor = cursor
        return True

    def batches(self) -> Iterator[List[Record]]:
        """Each batch as the server sent it (first what is left of one partly read);
        :attr:`cursor` resumes after it."""
        while self._fill():
            batch = list(self._pending)
            self._pending.clear()
            self.cursor = self._pending_cursor
            yield batch

    def __iter__(self) -> "Subscription":
        return self

    def __next__(self) -> Record:
        """The next record. :attr:`cursor` moves past a batch when its last record is
        handed out; records of a batch partly read stay for the next ``for`` loop."""
        if not self._fill():
            raise StopIteration
        record = self._pending.popleft()
        if not self._pending:
            self.cursor = self._pending_cursor
        return record
