#!/usr/bin/env python3
"""The baseline of bench/backup.sh: back up and restore a Strata table the way a Python engineer
would, with fastavro, reading and writing the database directly (not through Strata).

    fastavro_backup.py backup  (--sqlite DB | --pg URL) [--schema-from AVRO] OUT
    fastavro_backup.py restore (--sqlite DB | --pg URL) [--method M] AVRO

--sqlite DB is a Strata tenant file (<data-dir>/tenants/<tenant>.db, table "employees",
hiring_date stored as INTEGER microseconds since the epoch); --pg URL is a PostgreSQL database
holding the tenant schema (--pg-schema, default tenant_bench; hiring_date is TIMESTAMPTZ).

backup   SELECTs the table in primary-key order (as Strata does) and writes an Avro container
         file with the zstandard codec. The schema is Strata's writer schema, taken from the
         header of a Strata backup file with --schema-from, or else the equivalent built here.
         fastavro's block size is raised from 16 KB to Strata's 1 MiB (smaller files, as fast
         or faster). hiring_date reaches fastavro as integer microseconds: SQLite stores them,
         and PostgreSQL computes them in the query, which in trials beat fetching datetimes and
         letting fastavro convert each one by about a third (--pg-datetimes does the latter).
         PostgreSQL rows stream through a server-side cursor, 10,000 rows a fetch.
restore  reads the Avro file and replaces the table's rows in one transaction: DELETE, then
         SQLite: executemany(INSERT); PostgreSQL: --method copy-binary (default: COPY FROM
         STDIN in binary format via cursor.copy(), set_types and write_row; the fastest in
         trials), copy (the same in text format), or executemany (INSERT, pipelined by psycopg).

Prints one JSON line: op, database, method, how (in words), rows, and seconds (measured inside
Python, so imports excluded; bench/backup.sh times the whole process instead).
Needs fastavro, backports.zstd (the zstandard codec on Python < 3.14) and psycopg 3.
"""

import argparse
import datetime
import json
import sqlite3
import sys
import time

import fastavro

COLUMNS = ["employee_id", "employee_name", "hiring_date", "department_id", "job_id"]
TABLE = "employees"
BLOCK_BYTES = 1 << 20  # Strata's Avro block size; fastavro's default is 16,000 bytes

# Strata's writer schema for hr.employees (every column required), as in its backups' headers.
SCHEMA = {
    "type": "record",
    "name": "employees",
    "namespace": "strata.hr",
    "fields": [
        {"name": "employee_id", "type": "long"},
        {"name": "employee_name", "type": "string"},
        {"name": "hiring_date", "type": {"type": "long", "logicalType": "timestamp-micros"}},
        {"name": "department_id", "type": "long"},
        {"name": "job_id", "type": "long"},
    ],
}


EPOCH = datetime.datetime(1970, 1, 1, tzinfo=datetime.timezone.utc)
MICROSECOND = datetime.timedelta(microseconds=1)


def backup_sqlite(db, schema, out):
    con = sqlite3.connect(db)
    cur = con.execute(f"SELECT {', '.join(COLUMNS)} FROM {TABLE} ORDER BY employee_id")
    n = 0

    def records():
        nonlocal n
        for row in cur:
            n += 1
            # hiring_date is already microseconds since the epoch; fastavro writes an int as-is.
            yield dict(zip(COLUMNS, row))

    with open(out, "wb") as f:
        fastavro.writer(f, schema, records(), codec="zstandard", sync_interval=BLOCK_BYTES)
    con.close()
    return n


def backup_pg(url, pg_schema, schema, out, datetimes):
    import psycopg
    from psycopg.rows import dict_row

    n = 0
    with psycopg.connect(url) as conn:
        with conn.cursor(name="strata_bench_backup", row_factory=dict_row) as cur:
            cur.itersize = 10_000
            cols = list(COLUMNS)
            if not datetimes:
                # Exact: extract() returns numeric since PostgreSQL 14.
                cols[2] = "(extract(epoch FROM hiring_date) * 1000000)::bigint AS hiring_date"
            cur.execute(f'SELECT {", ".join(cols)} FROM "{pg_schema}".{TABLE} ORDER BY employee_id')

            def records():
                nonlocal n
                for rec in cur:
                    n += 1
                    yield rec

            with open(out, "wb") as f:
                fastavro.writer(f, schema, records(), codec="zstandard", sync_interval=BLOCK_BYTES)
    return n


def restore_sqlite(db, path):
    con = sqlite3.connect(db, isolation_level=None)  # explicit BEGIN/COMMIT below
    n = 0
    with open(path, "rb") as f:
        reader = fastavro.reader(f)

        def rows():
            nonlocal n
            for r in reader:
                n += 1
                # fastavro decodes timestamp-micros into an aware datetime; SQLite stores the
                # integer microseconds (exact arithmetic, no float rounding).
                us = (r["hiring_date"] - EPOCH) // MICROSECOND
                yield (r["employee_id"], r["employee_name"], us, r["department_id"], r["job_id"])

        con.execute("BEGIN")
        try:
            con.execute(f"DELETE FROM {TABLE}")
            con.executemany(f"INSERT INTO {TABLE} ({', '.join(COLUMNS)}) VALUES (?, ?, ?, ?, ?)", rows())
            con.execute("COMMIT")
        except BaseException:
            con.execute("ROLLBACK")
            raise
    con.close()
    return n


def restore_pg(url, pg_schema, path, method):
    import psycopg

    table = f'"{pg_schema}".{TABLE}'
    cols = ", ".join(COLUMNS)
    n = 0
    with open(path, "rb") as f, psycopg.connect(url) as conn:  # one transaction, committed on exit
        reader = fastavro.reader(f)  # hiring_date as an aware datetime, which psycopg adapts

        def rows():
            nonlocal n
            for r in reader:
                n += 1
                yield (r["employee_id"], r["employee_name"], r["hiring_date"], r["department_id"], r["job_id"])

        with conn.cursor() as cur:
            cur.execute(f"DELETE FROM {table}")
            if method == "executemany":
                cur.executemany(f"INSERT INTO {table} ({cols}) VALUES (%s, %s, %s, %s, %s)", rows())
            else:
                binary = method == "copy-binary"
                sql = f"COPY {table} ({cols}) FROM STDIN" + (" (FORMAT BINARY)" if binary else "")
                with cur.copy(sql) as copy:
                    if binary:
                        copy.set_types(["int8", "text", "timestamptz", "int8", "int8"])
                    for row in rows():
                        copy.write_row(row)
    return n


METHODS = {
    "sqlite": {"executemany": "DELETE, then executemany(INSERT), in one transaction"},
    "pg": {
        "copy": "DELETE, then COPY FROM STDIN (text) via cursor.copy().write_row(), in one transaction",
        "copy-binary": "DELETE, then COPY FROM STDIN (binary, set_types) via cursor.copy().write_row(), in one transaction",
        "executemany": "DELETE, then executemany(INSERT) (pipelined), in one transaction",
    },
}


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("op", choices=["backup", "restore"])
    p.add_argument("file", help="the Avro file to write (backup) or read (restore)")
    db = p.add_mutually_exclusive_group(required=True)
    db.add_argument("--sqlite", metavar="DB", help="a Strata SQLite tenant file")
    db.add_argument("--pg", metavar="URL", help="a PostgreSQL URL")
    p.add_argument("--pg-schema", default="tenant_bench", help="the tenant's PostgreSQL schema (default tenant_bench)")
    p.add_argument("--schema-from", metavar="AVRO", help="take the writer schema from this Avro file's header")
    p.add_argument("--method", help="restore method: sqlite executemany; pg copy-binary (default), copy, executemany")
    p.add_argument("--pg-datetimes", action="store_true",
                   help="backup: fetch hiring_date as datetimes and let fastavro convert them (slower)")
    a = p.parse_args()

    kind = "sqlite" if a.sqlite else "pg"
    method = a.method or ("executemany" if kind == "sqlite" else "copy-binary")
    if a.op == "restore" and method not in METHODS[kind]:
        p.error(f"--method for {kind} must be one of: {', '.join(METHODS[kind])}")

    schema = SCHEMA
    if a.schema_from:
        with open(a.schema_from, "rb") as f:
            schema = fastavro.reader(f).writer_schema

    t0 = time.perf_counter()
    if a.op == "backup":
        how = "SELECT ... ORDER BY employee_id"
        if kind == "pg":
            how += " (server-side cursor, hiring_date as " + ("datetimes)" if a.pg_datetimes else "bigint microseconds)")
        how += ", fastavro.writer(codec='zstandard', 1 MiB blocks)"
        if kind == "sqlite":
            n = backup_sqlite(a.sqlite, schema, a.file)
        else:
            n = backup_pg(a.pg, a.pg_schema, schema, a.file, a.pg_datetimes)
    else:
        how = METHODS[kind][method]
        n = restore_sqlite(a.sqlite, a.file) if kind == "sqlite" else restore_pg(a.pg, a.pg_schema, a.file, method)
    secs = time.perf_counter() - t0
    print(json.dumps({"op": a.op, "database": kind, "method": method if a.op == "restore" else "select",
                      "how": how, "rows": n, "seconds": round(secs, 3)}))


if __name__ == "__main__":
    sys.exit(main())
