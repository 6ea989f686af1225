"""Reads and writes Avro files with fastavro, a library Strata did not write, to judge
Strata's backups. Called by tests/api/backups.rs.

  read FILE              print each record as one JSON line (dates, times, decimals as text)
  write-seed TABLE CSV OUT
                         write OUT with the seed's own schema for TABLE: ids as int, every
                         other field (hiring_date included) as string; rows with a missing
                         field are skipped, as the seed could not write them either
"""
import csv
import datetime
import decimal
import json
import sys

import fastavro

SEED_SCHEMAS = {
    "departments": [("department_id", "int"), ("department_name", "string")],
    "jobs": [("job_id", "int"), ("job_name", "string")],
    "employees": [
        ("employee_id", "int"),
        ("employee_name", "string"),
        ("hiring_date", "string"),
        ("department_id", "int"),
        ("job_id", "int"),
    ],
}


def plain(v):
    if isinstance(v, datetime.datetime):
        return v.astimezone(datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
    if isinstance(v, datetime.date):
        return v.isoformat()
    if isinstance(v, decimal.Decimal):
        return str(v)
    return v


def read(path):
    with open(path, "rb") as f:
        reader = fastavro.reader(f)
        print(json.dumps({"schema": reader.writer_schema, "codec": reader.codec}))
        for rec in reader:
            print(json.dumps({k: plain(v) for k, v in rec.items()}))


def write_seed(table, csv_path, out):
    fields = SEED_SCHEMAS[table]
    schema = fastavro.parse_schema(
        {"type": "record", "name": table, "fields": [{"name": n, "type": t} for n, t in fields]}
    )
    records = []
    with open(csv_path, newline="") as f:
        for row in csv.reader(f):
            if len(row) != len(fields) or any(v == "" for v in row):
                continue
            records.append({n: int(v) if t == "int" else v for (n, t), v in zip(fields, row)})
    with open(out, "wb") as f:
        fastavro.writer(f, schema, records, codec="deflate")
    print(len(records))


if __name__ == "__main__":
    if sys.argv[1] == "read":
        read(sys.argv[2])
    elif sys.argv[1] == "write-seed":
        write_seed(sys.argv[2], sys.argv[3], sys.argv[4])
    else:
        sys.exit("usage: read FILE | write-seed TABLE CSV OUT")
