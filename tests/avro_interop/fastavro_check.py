#!/usr/bin/env python3
"""Independent Avro implementation (fastavro) for Aquifer's interop test.

  fastavro_check.py read SCHEMA.avsc DATUM.avro...
      Reads each file as one schemaless Avro datum and prints one JSON object
      per line, in the JSON conventions of src/aquifer/schema/codec.h.
  fastavro_check.py write SCHEMA.avsc RECORDS.jsonl OUTDIR
      Reads one JSON record per line (codec.h conventions), converts it to
      fastavro's Python types and writes OUTDIR/datum_<n>.avro with
      schemaless_writer.

codec.h conventions: bytes and fixed are base64; decimals are exact strings
with `scale` fraction digits; uuid is the 8-4-4-4-12 string; timestamp-millis
is integer milliseconds since the epoch; NaN and infinities are the strings
"NaN", "Infinity", "-Infinity".
"""

import base64
import datetime
import decimal
import io
import json
import math
import sys
import uuid

import fastavro

EPOCH = datetime.datetime(1970, 1, 1, tzinfo=datetime.timezone.utc)


def to_json(value):
    """fastavro's Python value -> codec.h JSON value (type-directed)."""
    if value is None or isinstance(value, (bool, str, int)):
        return value
    if isinstance(value, float):
        if math.isnan(value):
            return "NaN"
        if math.isinf(value):
            return "Infinity" if value > 0 else "-Infinity"
        return value
    if isinstance(value, (bytes, bytearray)):
        return base64.b64encode(bytes(value)).decode("ascii")
    if isinstance(value, decimal.Decimal):
        return format(value, "f")
    if isinstance(value, uuid.UUID):
        return str(value)
    if isinstance(value, datetime.datetime):
        if value.tzinfo is None:
            value = value.replace(tzinfo=datetime.timezone.utc)
        return (value - EPOCH) // datetime.timedelta(milliseconds=1)
    if isinstance(value, dict):
        return {key: to_json(item) for key, item in value.items()}
    if isinstance(value, list):
        return [to_json(item) for item in value]
    raise TypeError(f"unexpected value from fastavro: {value!r}")


class FromJson:
    """codec.h JSON value -> the Python value fastavro's writer expects (schema-directed)."""

    def __init__(self):
        self.named = {}

    def convert(self, schema, value):
        if isinstance(schema, list):
            if value is None:
                return None
            branch = next(b for b in schema if b != "null")
            return self.convert(branch, value)
        if isinstance(schema, str):
            if schema in self.named:
                return self.convert(self.named[schema], value)
            if schema in ("float", "double") and isinstance(value, str):
                return {"NaN": math.nan, "Infinity": math.inf, "-Infinity": -math.inf}[value]
            if schema in ("float", "double"):
                return float(value)
            if schema == "bytes":
                return base64.b64decode(value)
            return value
        kind = schema["type"]
        logical = schema.get("logicalType")
        if kind in ("record", "enum", "fixed"):
            self.named[schema["name"]] = schema
        if logical == "decimal":
            return decimal.Decimal(str(value))
        if logical == "uuid":
            return uuid.UUID(value)
        if logical == "timestamp-millis":
            return value  # fastavro accepts integer milliseconds
        if kind == "record":
            return {f["name"]: self.convert(f["type"], value[f["name"]]) for f in schema["fields"]}
        if kind == "array":
            return [self.convert(schema["items"], item) for item in value]
        if kind == "fixed":
            return base64.b64decode(value)
        if kind == "enum":
            return value
        return self.convert(kind, value)


def main(argv):
    if len(argv) < 3 or argv[1] not in ("read", "write"):
        print(__doc__, file=sys.stderr)
        return 2
    with open(argv[2]) as f:
        raw_schema = json.load(f)
    schema = fastavro.parse_schema(raw_schema)
    if argv[1] == "read":
        for path in argv[3:]:
            with open(path, "rb") as f:
                data = f.read()
            stream = io.BytesIO(data)
            record = fastavro.schemaless_reader(stream, schema)
            if stream.tell() != len(data):
                raise ValueError(f"{path}: {len(data) - stream.tell()} trailing bytes")
            print(json.dumps(to_json(record), allow_nan=False))
        return 0
    records_path, outdir = argv[3], argv[4]
    with open(records_path) as f:
        lines = [line for line in f.read().splitlines() if line.strip()]
    for index, line in enumerate(lines):
        value = FromJson().convert(raw_schema, json.loads(line))
        out = io.BytesIO()
        fastavro.schemaless_writer(out, schema, value)
        with open(f"{outdir}/datum_{index}.avro", "wb") as f:
            f.write(out.getvalue())
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
