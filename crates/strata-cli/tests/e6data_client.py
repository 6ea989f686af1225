"""The real, unmodified e6data Python connector against Strata (through nginx).

    python e6data_client.py types HOST PORT TENANT KEY
        prints one JSON document: every query's description and rows (values made JSON-safe)
    python e6data_client.py loop HOST PORT TENANT KEY STOPFILE
        runs queries until STOPFILE exists; prints {"ok": n, "failures": [...]}
"""
import decimal
import json
import os
import sys
import time

from e6data_python_connector import Connection


def connect(host, port, tenant, key):
    return Connection(host=host, port=int(port), username=tenant, password=key,
                      database="hr", catalog="strata")


def safe(v):
    if isinstance(v, decimal.Decimal):
        return {"decimal": str(v)}
    return v


def run(conn, sql, catalog="strata"):
    cur = conn.cursor(catalog_name=catalog, db_name="hr") if catalog else conn.cursor()
    qid = cur.execute(sql)
    desc = [[d[0], d[1]] for d in cur.description]
    rows = [[safe(v) for v in r] for r in cur.fetchall()]
    rowcount = cur.rowcount
    cur.clear()
    cur.close()
    return {"query_id": qid, "description": desc, "rows": rows, "rowcount": rowcount}


def types(host, port, tenant, key):
    conn = connect(host, port, tenant, key)
    out = {
        "products": run(conn, "SELECT sku, price, launched, active, updated_at, stock FROM shop.products ORDER BY sku;"),
        "employees": run(conn, "SELECT employee_id, employee_name, hiring_date, department_id, job_id "
                               "FROM employees ORDER BY employee_id LIMIT 3"),
        "per_department": run(conn, "SELECT d.department_name, count(*) AS n FROM employees e "
                                    "JOIN departments d ON d.department_id = e.department_id "
                                    "GROUP BY d.department_name ORDER BY d.department_name"),
        "schemas": conn.get_schema_names("strata"),
        "tables": sorted(conn.get_tables("strata", "hr")),
        "columns": conn.get_columns("strata", "hr", "employees"),
    }
    out["sqlalchemy"] = reflect(host, port, tenant, key)
    # The V1 calls (no catalog: prepareStatement/executeStatement)...
    v1 = Connection(host=host, port=int(port), username=tenant, password=key)
    out["products_v1"] = run(v1, "SELECT sku, price, launched, active, updated_at, stock FROM products ORDER BY sku", None)
    v1.close()
    # ...and 3.0.2's getNextResultBatchV2 with its strict decoder.
    v2 = Connection(host=host, port=int(port), username=tenant, password=key, database="hr", catalog="strata",
                    enable_result_batch_v2=True)
    out["products_v2"] = run(v2, "SELECT sku, price, launched, active, updated_at, stock FROM products ORDER BY sku")
    v2.close()
    # explain_analyse and dry_run, as the connector's README uses them.
    cur = conn.cursor(catalog_name="strata", db_name="hr")
    cur.execute("SELECT count(*) FROM jobs")
    cur.fetchall()
    out["explain_analyse"] = str(cur.explain_analyse())
    cur.clear()
    out["dry_run"] = str(conn.dry_run("SELECT count(*) FROM jobs"))
    # Errors reach the caller as gRPC errors with a readable message.
    try:
        run(conn, "DELETE FROM employees")
        out["delete"] = "accepted?!"
    except Exception as e:  # grpc.RpcError
        out["delete"] = str(e)
    conn.close()
    print(json.dumps(out, default=str))


def reflect(host, port, tenant, key):
    """What a SQLAlchemy user of the connector sees: each reflected column's SQLAlchemy type,
    and the Python type of each value of a row read through the reflected table."""
    from urllib.parse import quote
    import sqlalchemy as sa
    engine = sa.create_engine(f"e6data://{quote(tenant, safe='')}:{quote(key, safe='')}@{host}:{port}/"
                              "?schema=hr&catalog=strata")
    out = {}
    for schema, table, key_col, key_val in (("hr", "employees", "employee_id", "1"), ("shop", "products", "sku", "'A-1'")):
        t = sa.Table(table, sa.MetaData(), autoload_with=engine, schema=schema)
        out[table] = {c.name: type(c.type).__name__ for c in t.columns}
        with engine.connect() as c:
            # .all(), not .one(): the connector's fetchone() answers a list holding the row
            # (its own quirk), which SQLAlchemy's one() cannot read.
            rows = c.execute(sa.select(t).where(t.c[key_col] == sa.literal_column(key_val))).all()
        assert len(rows) == 1, rows
        out[table + "_row"] = {k: type(v).__name__ for k, v in rows[0]._mapping.items()}
    engine.dispose()
    return out


def loop(host, port, tenant, key, stop):
    conn = connect(host, port, tenant, key)
    ok, failures, n = 0, [], 0
    while not os.path.exists(stop) and n < 100000:
        n += 1
        limit = 50 + n % 200
        try:
            r = run(conn, "WITH RECURSIVE s(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM s WHERE i < %d) "
                          "SELECT i, 'r' || i FROM s" % limit)
            want = [[i, "r%d" % i] for i in range(1, limit + 1)]
            if r["rows"] != want:
                failures.append("wrong rows for limit %d" % limit)
            else:
                ok += 1
        except Exception as e:
            failures.append(repr(e)[:300])
        time.sleep(0.01)
    conn.close()
    print(json.dumps({"ok": ok, "failures": failures}))


if __name__ == "__main__":
    mode = sys.argv[1]
    if mode == "types":
        types(*sys.argv[2:6])
    elif mode == "loop":
        loop(*sys.argv[2:7])
    else:
        sys.exit("unknown mode " + mode)
