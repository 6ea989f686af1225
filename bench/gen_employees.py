#!/usr/bin/env python3
"""Generate a deterministic, header-less employees CSV for the Strata benchmarks.

Rows look like the bundled seed (data/hr/employees.csv):

    employee_id,employee_name,hiring_date,department_id,job_id
    1,Harold Vogt,2021-11-07T02:48:42Z,2,96

Ids run 1..N; department_id is in 1..12 and job_id in 1..183, so clean rows reference the
canonical departments and jobs from data/hr. Every 33rd row (about 3%, spread evenly through the
file) is dirty, cycling through five kinds of mistake so each loader sees the same mix:

    missing    one field left empty (name, hiring_date, department_id or job_id, in turn)
    datetime   hiring_date is 2021-13-40T99:00:00Z
    id         employee_id is not an integer (x<id>)
    fk         department_id is 999, which does not exist
    columns    wrong column count (a field dropped or an extra one added, in turn)

The same --rows and --seed always produce byte-identical output, so runs are comparable.
Standard library only.
"""

import argparse
import random
import sys
import time

FIRST = (
    "Harold Ty Lyman Ada Grace Alan Linus Margaret Ken Dennis Barbara Edsger Donald Frances "
    "John Radia Shafi Leslie Tim Vint Hedy Katherine Dorothy Mary Annie Joan Evelyn Karen "
    "Niklaus Bjarne Guido Yukihiro Rasmus Brendan Anders James Sophie Ruth Jean Kathleen"
).split()
LAST = (
    "Vogt Hofer Hadye Lovelace Hopper Turing Torvalds Hamilton Thompson Ritchie Liskov Dijkstra "
    "Knuth Allen Backus Perlman Goldwasser Lamport Berners-Lee Cerf Lamarr Johnson Vaughan "
    "Jackson Easley Clarke Berezin Jones Wirth Stroustrup Rossum Matsumoto Lerdorf Eich Hejlsberg "
    "Gosling Wilson Teitelman Sammet Booth"
).split()

DIRTY_EVERY = 33  # 1/33 ~ 3.03% of rows
KINDS = ("missing", "datetime", "id", "fk", "columns")

# Hiring dates fall somewhere in 2021, like the seed.
T0 = 1609459200  # 2021-01-01T00:00:00Z
SPAN = 365 * 86400


def clean_row(rng, i):
    name = f"{rng.choice(FIRST)} {rng.choice(LAST)}"
    hired = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(T0 + rng.randrange(SPAN)))
    return [str(i), name, hired, str(rng.randint(1, 12)), str(rng.randint(1, 183))]


def spoil(row, i):
    """Apply the i-th dirty row's mistake; the kind rotates so the mix stays even."""
    n = i // DIRTY_EVERY
    kind = KINDS[n % len(KINDS)]
    turn = n // len(KINDS)  # varies the detail within a kind
    if kind == "missing":
        row[1 + turn % 4] = ""
    elif kind == "datetime":
        row[2] = "2021-13-40T99:00:00Z"
    elif kind == "id":
        row[0] = f"x{i}"
    elif kind == "fk":
        row[3] = "999"
    elif turn % 2 == 0:
        row.pop()  # 4 fields
    else:
        row.append("extra")  # 6 fields
    return row


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--rows", type=int, default=1_000_000, help="number of rows (default 1,000,000)")
    p.add_argument("--seed", type=int, default=20210727, help="random seed (default 20210727)")
    p.add_argument("--crlf", action="store_true", help="end lines with CRLF like the bundled seed (default LF)")
    p.add_argument("-o", "--output", default="-", help="output file (default stdout)")
    a = p.parse_args()

    rng = random.Random(a.seed)
    eol = "\r\n" if a.crlf else "\n"
    out = sys.stdout if a.output == "-" else open(a.output, "w", newline="", encoding="utf-8")
    dirty = 0
    buf = []
    for i in range(1, a.rows + 1):
        # Draw the clean values for every row, dirty or not, so the RNG stream does not depend
        # on which rows are spoiled.
        row = clean_row(rng, i)
        if i % DIRTY_EVERY == 0:
            row = spoil(row, i)
            dirty += 1
        # Names never contain commas or quotes, so plain joining is valid CSV.
        buf.append(",".join(row))
        if len(buf) >= 10_000:
            out.write(eol.join(buf) + eol)
            buf.clear()
    if buf:
        out.write(eol.join(buf) + eol)
    if out is not sys.stdout:
        out.close()
    print(f"gen_employees: {a.rows} rows, {dirty} dirty ({100.0 * dirty / max(a.rows, 1):.2f}%)", file=sys.stderr)


if __name__ == "__main__":
    main()
