"""Schemathesis hooks for schema_fuzz.py: the rules of openapi.json that JSON Schema cannot state.

openapi.json states every shape rule a request has in JSON Schema. A few rules
relate a value to server state or to another value, which JSON Schema cannot
express; the document states them in prose and in "x-aquifer-constraints":

  - a cursor (GET /v1/cursor, GET /v1/jobs/{id}/rows) must be one this server
    issued (cursors are HMAC-signed), and a job-rows cursor one of that job;
  - POST /v1/sql takes one SELECT over project.table names;
  - POST /v1/projects/{p}/tables: key names non-null primitive top-level fields
    of the schema, and the schema is valid Avro (unique names, typed defaults);
  - a table's records and filters (POST/GET .../records) follow its schema.

Just before a request that schemathesis generated as VALID (positive mode) is
sent, before_call makes those values satisfy these rules: a cursor the server
issued (collected from earlier answers by after_call and from the seed data),
a SELECT over the seeded table, a valid Avro schema with its key, records and
a filter of the table's schema (for tables this run created). Everything
else it generated (names, limits, flags, retention, job ids, other fields) is
sent as generated. Requests generated as invalid (negative mode) are never
touched, so "invalid requests are refused" keeps its full strength; and
schemathesis re-derives the mode after an edit, so an edit can never make it
expect a refusal of a valid request or the reverse.

The seed data comes from schema_fuzz.py through AQUIFER_SCHEMA_FUZZ_STATE (a
JSON file: {"cursors": [...], "job_cursors": {job_id: [...]}, "sql_tables": [...]}).
"""
import hashlib
import json
import os

import schemathesis

_STATE = {"cursors": [], "job_cursors": {}, "sql_tables": ["shop.orders"]}
_path = os.environ.get("AQUIFER_SCHEMA_FUZZ_STATE")
if _path:
    with open(_path) as f:
        _STATE.update(json.load(f))
_CURSORS = list(dict.fromkeys(_STATE["cursors"]))
_JOB_CURSORS = {k: list(v) for k, v in _STATE["job_cursors"].items()}

# Valid Avro record schemas with their keys (every type DESIGN.md lists).
_SCHEMAS = [
    ({"type": "record", "name": "order", "fields": [
        {"name": "id", "type": "string"}, {"name": "qty", "type": "long"}]}, ["id"]),
    ({"type": "record", "name": "event", "namespace": "fuzz", "fields": [
        {"name": "user", "type": "string"},
        {"name": "ts", "type": {"type": "long", "logicalType": "timestamp-millis"}},
        {"name": "score", "type": ["null", "double"], "default": None},
        {"name": "tags", "type": {"type": "array", "items": "string"}, "default": []}]},
     ["user", "ts"]),
    ({"type": "record", "name": "item", "fields": [
        {"name": "sku", "type": {"type": "string", "logicalType": "uuid"}},
        {"name": "price", "type": {"type": "bytes", "logicalType": "decimal", "precision": 10, "scale": 2}},
        {"name": "kind", "type": {"type": "enum", "name": "Kind", "symbols": ["A", "B"]}},
        {"name": "hash", "type": {"type": "fixed", "name": "Hash", "size": 4}},
        {"name": "ok", "type": "boolean", "default": True}]}, ["sku"]),
    ({"type": "record", "name": "nested", "fields": [
        {"name": "n", "type": "int"},
        {"name": "raw", "type": "bytes"},
        {"name": "addr", "type": {"type": "record", "name": "Addr", "fields": [
            {"name": "city", "type": "string"}, {"name": "zip", "type": ["string", "null"]}]}},
        {"name": "f", "type": "float", "default": 1.5}]}, ["n", "raw"]),
]


# For each schema above (and the seeded table): valid records and filters.
_RECORDS = {
    "order": [{"id": "a", "qty": 1}, {"id": "zz", "qty": -7, "@timestamp": 1700000000000}],
    "event": [{"user": "ada", "ts": 5, "score": None, "tags": ["x"]}, {"user": "bob", "ts": 9}],
    "item": [{"sku": "123e4567-e89b-12d3-a456-426614174000", "price": "12.34", "kind": "A",
              "hash": "3q2+7w==", "ok": False}],
    "nested": [{"n": 1, "raw": "AP8=", "addr": {"city": "Paris", "zip": None}, "f": 2.5},
               {"n": -3, "raw": "", "addr": {"city": "Oslo", "zip": "0150"}}],
}
_FILTERS = {
    "order": [{}, {"id": "a"}, {"id": {"_prefix": "a"}}, {"qty": {"_gte": 1, "_lt": 9}}],
    "event": [{}, {"user": "ada"}, {"user": "ada", "ts": {"_gte": 5}}],
    "item": [{}, {"sku": "123e4567-e89b-12d3-a456-426614174000"}, {"kind": "A"}],
    "nested": [{}, {"n": {"_gt": 0}}, {"n": 1, "raw": {"_prefix": ""}}],
}
# (project, table) -> schema name, for tables created with one of the schemas above.
_TABLES = {("shop", "orders"): "order"}


def _pick(seed, choices):
    digest = hashlib.sha256(repr(seed).encode()).digest()
    return choices[int.from_bytes(digest[:4], "big") % len(choices)]


def _sql(seed):
    table = _pick(("table", seed), _STATE["sql_tables"])
    n = int.from_bytes(hashlib.sha256(repr(seed).encode()).digest()[4:6], "big") % 100
    return _pick(seed, [
        "SELECT * FROM %s" % table,
        "SELECT id, qty FROM %s WHERE qty > %d ORDER BY id LIMIT %d" % (table, n, n + 1),
        "SELECT count(*) AS n FROM %s" % table,
        "select qty from %s where id = 'a%d'" % (table, n),
        "WITH t AS (SELECT * FROM %s) SELECT sum(qty) AS total FROM t" % table,
        "SELECT o.id FROM %s AS o JOIN %s AS p ON o.id = p.id" % (table, table),
    ])


def _positive(case):
    meta = case.meta
    return meta is not None and meta.generation.mode.is_positive


@schemathesis.hook
def before_call(context, case, kwargs):
    if not _positive(case):
        return
    op = case.operation.definition.raw.get("operationId")
    if op == "readCursor" and isinstance(case.query, dict):
        if case.query.get("cursor") not in _CURSORS and _CURSORS:
            case.query["cursor"] = _pick(case.query.get("cursor"), _CURSORS)
    elif op == "jobRows" and isinstance(case.query, dict) and case.query.get("cursor"):
        own = _JOB_CURSORS.get(str((case.path_parameters or {}).get("job_id")), [])
        if case.query["cursor"] not in own:
            if own:
                case.query["cursor"] = _pick(case.query["cursor"], own)
            else:
                case.query["cursor"] = ""  # absent or empty: the first page
    elif op == "sql" and isinstance(case.body, dict) and isinstance(case.body.get("query"), str):
        case.body["query"] = _sql(case.body["query"])
    elif op in ("writeRecords", "queryIndex"):
        path = case.path_parameters or {}
        kind = _TABLES.get((path.get("project"), path.get("table")))
        if kind is None:
            # Not a table this run created with a known schema: a write gets 404;
            # a filter is the empty object, which every table takes.
            if op == "queryIndex" and isinstance(case.query, dict) and "filter" in case.query:
                case.query["filter"] = "{}"  # content parameters travel serialized
            return
        if op == "writeRecords" and isinstance(case.body, list) and case.body:
            case.body[:] = [dict(r) for r in _pick(json.dumps(case.body, default=str), [
                _RECORDS[kind], _RECORDS[kind][:1], _RECORDS[kind][-1:]])]
        elif op == "queryIndex" and isinstance(case.query, dict) and "filter" in case.query:
            case.query["filter"] = json.dumps(_pick(repr(case.query["filter"]), _FILTERS[kind]))
    elif op == "createTable" and isinstance(case.body, dict):
        schema, key = _pick(json.dumps(case.body, sort_keys=True, default=str), _SCHEMAS)
        case.body["schema"] = schema
        case.body["key"] = list(key)


@schemathesis.hook
def after_call(context, case, response):
    op = case.operation.definition.raw.get("operationId")
    path = case.path_parameters or {}
    if op == "createTable" and response.status_code == 201 and isinstance(case.body, dict):
        schema = case.body.get("schema")
        name = schema.get("name") if isinstance(schema, dict) else None
        if name in _RECORDS:
            _TABLES[(path.get("project"), case.body.get("name"))] = name
        return
    if op == "deleteTable" and response.status_code == 204:
        _TABLES.pop((path.get("project"), path.get("table")), None)
        return
    if response.status_code != 200:
        return
    try:
        body = json.loads(response.content)
    except (ValueError, TypeError):
        return
    if not isinstance(body, dict):
        return
    for name in ("next_cursor", "change_cursor"):
        cursor = body.get(name)
        if isinstance(cursor, str) and cursor:
            if op == "jobRows":
                job = str((case.path_parameters or {}).get("job_id"))
                _JOB_CURSORS.setdefault(job, []).append(cursor)
            if cursor not in _CURSORS and len(_CURSORS) < 1000:
                _CURSORS.append(cursor)
