"""What the sync and asyncio clients share: configuration, requests, answers, retries,
batching and record conversion. No I/O here."""

from __future__ import annotations

import datetime as _dt
import decimal
import json
import math
import os
import random
import re
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import (
    Any,
    Dict,
    Iterable,
    Iterator,
    List,
    Mapping,
    Optional,
    Sequence,
    Tuple,
    Union,
)
from urllib.parse import quote

from ._errors import APIError, PayloadTooLarge, error_from_body

DEFAULT_URL = "http://127.0.0.1:8080"

Record = Dict[str, Any]
Filter = Mapping[str, Any]
Wait = Union[str, Sequence[str], None]
SchemaSource = Union[Mapping[str, Any], str, "os.PathLike[str]"]


@dataclass(frozen=True)
class RetryPolicy:
    """Retries of 503, 429 and connection errors (never of another 4xx).

    Attempt n waits ``min(backoff_max, backoff_initial * 2**n)`` with jitter, or the
    server's ``Retry-After`` when it sent one. A ``Retry-After`` above
    ``max_retry_after`` (a monthly quota used up: seconds until the month resets)
    is not waited for: the error is raised at once.
    """

    max_retries: int = 8
    backoff_initial: float = 0.1
    backoff_max: float = 5.0
    max_retry_after: float = 60.0

    def delay(self, attempt: int, retry_after: Optional[float]) -> float:
        if retry_after is not None:
            return max(0.0, retry_after)
        base = min(self.backoff_max, self.backoff_initial * (2**attempt))
        return float(base * (0.5 + random.random() / 2))


def resolve_url(url: Optional[str]) -> str:
    resolved = url or os.environ.get("AQUIFER_URL") or DEFAULT_URL
    if not re.match(r"^https?://", resolved):
        raise ValueError(f"Aquifer URL must start with http:// or https://, got {resolved!r}")
    return resolved.rstrip("/")


def resolve_secret(secret: Optional[str]) -> Optional[str]:
    return secret if secret is not None else os.environ.get("AQUIFER_SECRET") or None


def ws_url(base: str) -> str:
    if base.startswith("https://"):
        return "wss://" + base[len("https://"):] + "/v1/subscribe"
    return "ws://" + base[len("http://"):] + "/v1/subscribe"


def split_table(table: str) -> Tuple[str, str]:
    """``"project.table"`` → ``(project, table)``."""
    if not isinstance(table, str) or table.count(".") != 1:
        raise ValueError(f"a table is named 'project.table', got {table!r}")
    project, name = table.split(".")
    if not project or not name:
        raise ValueError(f"a table is named 'project.table', got {table!r}")
    return project, name


def seg(value: str) -> str:
    return quote(value, safe="")


def table_path(table: str) -> str:
    project, name = split_table(table)
    return f"/v1/projects/{seg(project)}/tables/{seg(name)}"


def wait_param(wait: Wait) -> Optional[str]:
    if wait is None:
        return None
    if isinstance(wait, str):
        return wait
    return ",".join(wait)


def load_schema(schema: SchemaSource) -> Dict[str, Any]:
    """An Avro record schema from a dict, JSON text, or the path of an ``.avsc`` file."""
    if isinstance(schema, Mapping):
        return dict(schema)
    if isinstance(schema, str) and schema.lstrip().startswith("{"):
        loaded = json.loads(schema)
    else:
        path = Path(schema)
        try:
            text = path.read_text(encoding="utf-8")
        except OSError as e:
            raise ValueError(f"cannot read the Avro schema file {str(path)!r}: {e}") from e
        try:
            loaded = json.loads(text)
        except json.JSONDecodeError as e:
            raise ValueError(f"{path}: not JSON: {e}") from e
    if not isinstance(loaded, dict):
        raise ValueError("an Avro schema must be a JSON object (a record schema)")
    return loaded


def parse_retry_after(value: Optional[str]) -> Optional[float]:
    if value is None:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        return None


def decode_body(content: bytes) -> Any:
    if not content:
        return None
    try:
        return json.loads(content)
    except ValueError:
        return content.decode("utf-8", "replace")


def error_for(status: int, content: Union[bytes, bytearray], retry_after_header: Optional[str]) -> APIError:
    return error_from_body(status, decode_body(bytes(content)), parse_retry_after(retry_after_header))


def should_retry(status: int) -> bool:
    return status in (429, 503)


# ---------------------------------------------------------------- answers


@dataclass
class Page:
    """One page of an index query, a log replay or a cursor.

    ``data`` holds records (dicts) or, for SQL job rows, lists. ``next_cursor`` pages on
    (None at the end); ``change_cursor`` starts a subscription from this read.
    """

    data: List[Any]
    next_cursor: Optional[str] = None
    change_cursor: Optional[str] = None
    residual: bool = False
    columns: Optional[List[Dict[str, Any]]] = None

    @classmethod
    def from_json(cls, body: Mapping[str, Any]) -> "Page":
        return cls(
            data=list(body.get("data") or []),
            next_cursor=body.get("next_cursor"),
            change_cursor=body.get("change_cursor"),
            residual=bool(body.get("residual", False)),
            columns=body.get("columns"),
        )


@dataclass
class WriteResult:
    """What a (batched) write did: ``records`` written over ``batches`` requests."""

    records: int = 0
    batches: int = 0
    write_ids: List[str] = field(default_factory=list)
    replayed: int = 0  # batches the server answered as replays of an earlier request
    durable: bool = True  # False when the server runs with relaxed durability


@dataclass
class SqlResult:
    """The rows of a finished SQL job."""

    job_id: str
    columns: List[Dict[str, Any]]
    rows: List[List[Any]]
    bytes_scanned: int = 0

    @property
    def column_names(self) -> List[str]:
        return [str(c.get("name")) for c in self.columns]

    def records(self) -> List[Record]:
        names = self.column_names
        return [dict(zip(names, row)) for row in self.rows]

    def to_pandas(self) -> Any:
        """The rows as a ``pandas.DataFrame`` (needs the ``pandas`` extra)."""
        pd = require_pandas()
        return pd.DataFrame(self.rows, columns=self.column_names)


def sql_wait_ms(timeout: Optional[float]) -> int:
    """How long ``sql()`` asks the server to wait for a job (``wait_ms``): 10 s, or less
    within ``timeout``."""
    if timeout is None:
        return 10_000
    return max(0, min(10_000, int(timeout * 1000)))


def require_pandas() -> Any:
    try:
        import pandas as pd
    except ImportError as e:  # pragma: no cover - exercised only without pandas
        raise ImportError(
            "this needs pandas: pip install 'aquifer-client[pandas]'"
        ) from e
    return pd


# ---------------------------------------------------------------- records and batches


def _is_dataframe(obj: Any) -> bool:
    return type(obj).__module__.split(".")[0] == "pandas" and hasattr(obj, "iloc") and hasattr(
        obj, "columns"
    )


def _is_missing(value: Any) -> bool:
    if value is None:
        return True
    if isinstance(value, float) and math.isnan(value):
        return True
    module = type(value).__module__.split(".")[0]
    if module == "pandas":
        name = type(value).__name__
        return name in ("NAType", "NaTType")
    if module == "numpy" and hasattr(value, "dtype"):
        try:
            return bool(value != value)  # NaN / NaT
        except (TypeError, ValueError):
            return False
    return False


def _plain(value: Any) -> Any:
    """A JSON-ready value: numpy scalars as Python ones, datetimes as ms since the epoch,
    decimals as strings (no digit lost), UUIDs as strings."""
    if value is None or isinstance(value, (str, bool, int)):
        return value
    if isinstance(value, float):
        return value
    if isinstance(value, Mapping):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    if isinstance(value, _dt.datetime):
        if value.tzinfo is None:
            value = value.replace(tzinfo=_dt.timezone.utc)
        return int(round(value.timestamp() * 1000))
    if isinstance(value, decimal.Decimal):
        return str(value)
    if isinstance(value, uuid.UUID):
        return str(value)
    module = type(value).__module__.split(".")[0]
    if module == "numpy":
        if hasattr(value, "tolist"):
            return _plain(value.tolist())
    if module == "pandas" and hasattr(value, "to_pydatetime"):
        return _plain(value.to_pydatetime())
    return value


def _frame_records(frame: Any, chunk: int = 10_000) -> Iterator[Record]:
    names = [str(c) for c in frame.columns]
    for start in range(0, len(frame), chunk):
        part = frame.iloc[start : start + chunk]
        for row in part.itertuples(index=False, name=None):
            yield {
                name: (None if _is_missing(v) else _plain(v)) for name, v in zip(names, row)
            }


def iter_records(records: Any) -> Iterator[Record]:
    """Records from a list or any iterable of dicts, or a pandas DataFrame (missing
    values become null)."""
    if _is_dataframe(records):
        yield from _frame_records(records)
        return
    if isinstance(records, (str, bytes, bytearray, Mapping)):
        raise TypeError(
            "records must be a list or iterable of dicts, or a pandas DataFrame "
            f"(got {type(records).__name__}; wrap a single record in a list)"
        )
    try:
        iterator = iter(records)
    except TypeError:
        raise TypeError(
            "records must be a list or iterable of dicts, or a pandas DataFrame "
            f"(got {type(records).__name__})"
        ) from None
    yield from iterator


def _json_default(value: Any) -> Any:
    plain = _plain(value)
    if plain is value:
        raise TypeError(f"{type(value).__name__} is not JSON serializable")
    return plain


def encode_record(record: Any, index: int) -> bytes:
    if not isinstance(record, Mapping):
        raise TypeError(f"record {index} is a {type(record).__name__}, not a dict")
    try:
        return json.dumps(
            record, separators=(",", ":"), ensure_ascii=False, allow_nan=False, default=_json_default
        ).encode("utf-8")
    except (TypeError, ValueError) as e:
        raise ValueError(f"record {index} cannot be sent as JSON: {e}") from e


@dataclass
class Batch:
    start: int  # index in the caller's input of the first record
    lines: List[bytes]
    key: str  # Idempotency-Key, the same for every retry of this batch

    @property
    def body(self) -> bytes:
        return b"\n".join(self.lines) + b"\n"

    def __len__(self) -> int:
        return len(self.lines)


class Limits:
    """Records and bytes per request: the caller's, lowered to what the server said in a
    413 (``over the limit of N records per write`` / ``of N bytes``)."""

    def __init__(self, records: int, body_bytes: int) -> None:
        if records < 1 or body_bytes < 2:
            raise ValueError("batch_records and max_batch_bytes must be positive")
        self.records = records
        self.body_bytes = body_bytes

    def learn(self, err: PayloadTooLarge) -> bool:
        """True when ``err`` is a request-level limit (the batch can be split)."""
        m = re.search(r"over the limit of (\d+) records per write", err.message)
        if m:
            self.records = max(1, min(self.records, int(m.group(1))))
            return True
        m = re.search(r"request body.*over the limit of (\d+) bytes", err.message)
        if m:
            self.body_bytes = max(2, min(self.body_bytes, int(m.group(1))))
            return True
        return False


def make_key(prefix: Optional[str], start: int, count: int) -> str:
    if prefix is None:
        return "aqpy-" + uuid.uuid4().hex
    return f"{prefix}:{start}+{count}"


def plan_batches(
    records: Iterable[Any], limits: Limits, key_prefix: Optional[str], start: int = 0
) -> Iterator[Batch]:
    """Encodes records as NDJSON lines and groups them into batches within ``limits``
    (read afresh for every batch, so a limit learned mid-write applies to the rest)."""
    lines: List[bytes] = []
    size = 0
    first = start
    index = start
    for record in records:
        line = encode_record(record, index)
        if lines and (len(lines) >= limits.records or size + len(line) + 1 > limits.body_bytes):
            yield Batch(first, lines, make_key(key_prefix, first, len(lines)))
            lines, size, first = [], 0, index
        lines.append(line)
        size += len(line) + 1
        index += 1
    if lines:
        yield Batch(first, lines, make_key(key_prefix, first, len(lines)))


def split_batch(batch: Batch, limits: Limits, key_prefix: Optional[str]) -> List[Batch]:
    """A refused batch re-planned within the lowered limits (new keys: nothing of it
    was written)."""
    out: List[Batch] = []
    lines: List[bytes] = []
    size = 0
    first = batch.start
    for i, line in enumerate(batch.lines):
        if lines and (len(lines) >= limits.records or size + len(line) + 1 > limits.body_bytes):
            out.append(Batch(first, lines, make_key(key_prefix, first, len(lines))))
            lines, size, first = [], 0, batch.start + i
        lines.append(line)
        size += len(line) + 1
    if lines:
        out.append(Batch(first, lines, make_key(key_prefix, first, len(lines))))
    return out


def annotate_write_error(err: APIError, batch: Batch, written: int) -> APIError:
    """Adds the caller's record index (``input_record``) to each detail and ``written``."""
    for detail in err.details:
        if isinstance(detail, dict) and isinstance(detail.get("record"), int):
            detail["input_record"] = batch.start + detail["record"]
    err.written = written
    return err


def record_write(result: WriteResult, batch: Batch, body: Any) -> None:
    result.batches += 1
    if isinstance(body, Mapping):
        if body.get("write_id"):
            result.write_ids.append(str(body["write_id"]))
        if body.get("replayed"):
            result.replayed += 1
        if body.get("durable") is False:
            result.durable = False
    result.records += len(batch)
