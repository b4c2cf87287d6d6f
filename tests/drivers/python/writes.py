"""Writes through psycopg 3 as applications send them: executemany in a
transaction and in autocommit (with RETURNING), a failing executemany (all
or nothing), pipeline mode (with a failing statement), a parameterized
multi-row INSERT with RETURNING in VALUES order, and COPY in text, CSV and
binary format with column lists in another order than the table's.

Run by tests/drivers.rs against shardproxy and against one plain Postgres
with the same arguments; the test compares the tables.

Args: conninfo, first id. Exits 1 (with the reason) when an outcome
differs from what Postgres does.
"""

import sys

import psycopg
from psycopg import errors

conninfo, base = sys.argv[1], int(sys.argv[2])
INS = "insert into py_rows (id, v, n) values (%s, %s, %s)"


def check(ok, what):
    if not ok:
        print("FAILED:", what, file=sys.stderr)
        sys.exit(1)


def count(cur, lo, hi):
    cur.execute("select count(*) from py_rows where id >= %s and id < %s", (lo, hi))
    return cur.fetchone()[0]


with psycopg.connect(conninfo) as c:
    cur = c.cursor()
    cur.executemany(INS, [(base + i, f"e{i}", i) for i in range(50)])
    c.commit()
    try:
        cur.executemany(INS, [(base + 100 + i, "f", i) for i in range(20)] + [(base, "dup", 0)])
        check(False, "executemany with a duplicate key succeeded")
    except errors.UniqueViolation:
        c.rollback()
    check(count(cur, base + 100, base + 120) == 0, "a failed executemany left rows")
    c.commit()

    c.autocommit = True
    rows = [(base + 200 + i, f"r{i}", i) for i in range(30)]
    cur.executemany(INS + " returning id", rows, returning=True)
    got = []
    while True:
        got.append(cur.fetchone()[0])
        if not cur.nextset():
            break
    check(got == [r[0] for r in rows], f"executemany RETURNING out of order: {got}")

    with c.pipeline():
        for i in range(25):
            cur.execute(INS, (base + 300 + i, "pipe", i))
    try:
        with c.pipeline():
            cur.execute(INS, (base + 350, "pipe-bad", 0))
            cur.execute(INS, (base, "dup", 0))
            cur.execute(INS, (base + 351, "pipe-bad", 1))
        check(False, "a pipeline with a duplicate key succeeded")
    except errors.UniqueViolation:
        pass
    check(count(cur, base + 350, base + 352) == 0, "a failed pipeline left rows")

    ids = [base + 400 + 7 * i for i in range(12)]
    values = ", ".join(["(%s, %s, %s)"] * len(ids))
    params = [x for i in ids for x in (i, "multi", i % 5)]
    cur.execute(f"insert into py_rows (id, v, n) values {values} returning id", params)
    got = [r[0] for r in cur.fetchall()]
    check(got == ids, f"multi-row RETURNING out of order: {got}")

    with cur.copy("copy py_rows (v, id, n) from stdin") as cp:
        for i in range(300):
            cp.write_row((f"text\t{i}", base + 1000 + i, i))
    check(cur.rowcount == 300, f"text COPY said {cur.rowcount}")
    with cur.copy("copy py_rows (n, id, v) from stdin (format binary)") as cp:
        cp.set_types(["int4", "int8", "text"])
        for i in range(300):
            cp.write_row((None if i % 9 == 0 else i, base + 2000 + i, f"binary {i}"))
    check(cur.rowcount == 300, f"binary COPY said {cur.rowcount}")
    with cur.copy("copy py_rows from stdin (format binary)") as cp:
        cp.set_types(["int8", "text", "int4"])
        for i in range(200):
            cp.write_row((base + 3000 + i, None, i))
    with cur.copy("copy py_rows (id, v) from stdin (format csv, header)") as cp:
        cp.write(b"id,v\n")
        for i in range(100):
            cp.write(f'{base + 4000 + i},"csv, ""quoted"" {i}"\n'.encode())
    # A COPY of a key that is not an integer fails as a whole.
    try:
        with cur.copy("copy py_rows (id, v) from stdin") as cp:
            cp.write_row((base + 5000, "ok"))
            cp.write(b"not-a-number\tbad\n")
        check(False, "COPY of a bad key succeeded")
    except (errors.InvalidTextRepresentation, errors.DataException):
        pass
    check(count(cur, base + 5000, base + 5001) == 0, "a failed COPY left rows")

    out = bytearray()
    with cur.copy(
        "copy (select id, v from py_rows where id >= %s and id < %s) to stdout",
        (base + 1000, base + 1300),
    ) as cp:
        for data in cp:
            out += data
    check(out.count(b"\n") == 300, "COPY TO returned the wrong number of rows")
    # Binary COPY TO from every shard: one header, every row, one trailer.
    with cur.copy(
        "copy (select id, v, n from py_rows where id >= %s and id < %s) to stdout (format binary)",
        (base + 2000, base + 2300),
    ) as cp:
        cp.set_types(["int8", "text", "int4"])
        got = sorted(r[0] for r in cp.rows())
    check(got == list(range(base + 2000, base + 2300)), f"binary COPY TO gave {len(got)} rows")
    print("rows", count(cur, base, base + 10000))
