#!/usr/bin/env python3
"""Generates tests/differential/data.sql: the rows of the sharded tables of keyspace `user`.

The differential suite (tests/tests/differential.rs) loads this file through the sidecar
(which routes each row to its shard) and directly into one unsharded MariaDB, then compares
the answers of the corpus on both. The output is committed; re-run this script (Python 3,
standard library only) after changing it:

    python3 tests/differential/gen_data.py > tests/differential/data.sql

It is deterministic (fixed seed, no clock, no environment). What the data is built to
exercise:

* customer ids that are not 1..N: small ids with gaps, mid-size ids, and large ids up to
  2^53, plus fixed "anchor" customers (below) that the corpus and dml.sql refer to;
* skew: a few customers with 50+ orders, about half of the customers with none, some
  orders whose customer does not exist (LEFT JOIN / NOT IN), products 51..55 that do not
  exist in `main.products`;
* duplicates in every non-key column (names, cities, statuses, prices, dates);
* about 10% NULLs in nullable columns (more in orders.note), and empty strings next to NULLs;
* text that only a collation-aware merge orders right: 'Émile' / 'ÉMILE' / 'émile' / 'Emile'
  (equal under utf8mb4_general_ci), 'Zoë' / 'Zoe' / 'ZOË', "O'Brien", 'straße' / 'strasse',
  leading spaces, CJK and Vietnamese, and two emoji names that general_ci treats as equal.

Ids reserved for dml.sql (never generated here): customers 3000000001..3000000999,
orders 900001..999999, events 9000001..9999999.
"""

import random
import sys
from datetime import date, datetime, timedelta

SEED = 20240611
ROWS_PER_INSERT = 100
N_CUSTOMERS = 2000
N_ORDERS = 6000
N_EVENTS = 3000
# Orders whose customer_id matches no customer.
ORPHAN_CUSTOMER_IDS = [777777777777, 31337, 8888888888888]

NAMES = [
    # (name, weight)
    ("Anna", 30), ("Ben", 25), ("Chloé", 20), ("David", 25),
    ("Émile", 12), ("ÉMILE", 8), ("émile", 10), ("Emile", 10),
    ("Zoë", 12), ("Zoe", 10), ("ZOË", 6), ("zoë", 5),
    ("O'Brien", 10), ("o'brien", 5), ("O'BRIEN", 4),
    ("straße", 6), ("Straße", 5), ("strasse", 5),
    ("  leading space", 6), (" leading space", 4),
    ("Müller", 15), ("Mueller", 8), ("MÜLLER", 5),
    ("José", 12), ("Jose", 10), ("Łukasz", 6), ("Søren", 6), ("Björk", 6),
    ("Nguyễn Văn An", 5), ("李雷", 5), ("Ana 😀", 3), ("Ana 🎉", 3),
    ("Åsa", 5), ("Ängel", 4), ("Ørjan", 4), ("Çelik", 5),
    ("Smith", 40), ("smith", 10), ("SMITH", 8), ("Jones", 30), ("Brown", 25),
    ("Taylor", 25), ("Wilson", 20), ("Martin", 30), ("Bernard", 20), ("Dubois", 20),
    ("Garcia", 20), ("García", 15), ("Rossi", 20), ("Schmidt", 20), ("Kowalski", 15),
    ("Tanaka", 15), ("Kim", 20), ("Lee", 25), ("Nakamura", 10), ("Silva", 20),
    ("Santos", 15), ("Ivanov", 12), ("Petrov", 10), ("Hansen", 12), ("Eriksson", 10),
    ("de la Cruz", 8), ("van der Berg", 8), ("DeVries", 6), ("Al-Sayed", 8),
    ("N/A", 5), ("_under", 4), ("100% Cotton", 4), ("x", 3), ("Y", 3),
]

CITIES = [
    ("Paris", 120), ("Lyon", 40), ("Nice", 25), ("München", 50), ("Berlin", 60),
    ("Köln", 30), ("Zürich", 35), ("Genève", 20), ("Wien", 30), ("Kraków", 25),
    ("Warszawa", 25), ("São Paulo", 40), ("Bogotá", 20), ("Ciudad de México", 25),
    ("Montréal", 25), ("Reykjavík", 10), ("Malmö", 15), ("Århus", 10),
    ("New York", 70), ("Tokyo", 45), ("Abidjan", 15), ("Madrid", 40), ("A Coruña", 10),
    ("Łódź", 10), ("Istanbul", 30), ("Lagos", 20), ("Nairobi", 15),
]

COUNTRY_CODES = [
    ("FR", 100), ("DE", 80), ("US", 90), ("CH", 30), ("AT", 25), ("PL", 30), ("BR", 35),
    ("CO", 15), ("MX", 20), ("CA", 25), ("IS", 8), ("SE", 15), ("DK", 10), ("JP", 40),
    ("CI", 12), ("ES", 35), ("TR", 20), ("NG", 15), ("KE", 10), ("IE", 10), ("GB", 40),
    ("IT", 25), ("VN", 10), ("CN", 20), ("IN", 25), ("AU", 10), ("NZ", 5),
    # Not in `countries`: an inner join drops these rows, a LEFT JOIN keeps them.
    ("XX", 20), ("ZZ", 8),
]

STATUSES = [("new", 15), ("paid", 30), ("shipped", 30), ("delivered", 40),
            ("cancelled", 8), ("returned", 5)]

NOTES = [
    ("gift", 10), ("Gift wrap", 6), ("leave at door", 8), ("fragile", 6), ("urgent", 5),
    ("customer's request", 4), ("Lieferung später", 4), ("ñandú", 2), ("", 6),
    ("call before delivery", 5), ("50% off", 3), ("back_order", 3), ("ÉTÉ", 2),
]

PRICES = ["9.99", "19.99", "4.50", "100.00", "0.99", "249.00", "12.30", "55.55",
          "5.00", "1.00", "999.99", "0.01", "33.33", "75.00", "19.99", "9.99"]

KINDS = [("login", 40), ("logout", 25), ("click", 60), ("view", 80), ("purchase", 15),
         ("refund", 4), ("Login", 0)]  # weight 0: never generated (it would equal 'login')

PAYLOADS = [
    "page=/home", "page=/cart", "page=/checkout", '{"k": 1}', '{"k": 2, "tags": ["a", "b"]}',
    "ÄÖÜ äöü ß", "campaign=été", "ref=O'Hara", "", "  padded", "x" * 200, "日本語テキスト",
    "utm_source=newsletter&utm_medium=email", "50%", "a_b_c",
]

# Customers the corpus and dml.sql rely on. Values in column order:
# id, name, email, city, country_code, balance, score, active, created
ANCHORS = [
    (1, "Anna", "anna@example.com", "Paris", "FR", "100.00", 10, 1, date(2020, 1, 1)),
    (2, "Émile", None, "Lyon", "FR", "0.00", None, 1, None),
    (3, "ÉMILE", "emile3@example.com", "Paris", "FR", "-15.50", 0, 0, date(2019, 6, 30)),
    (5, "Zoë", "zoe@example.com", "Zürich", "CH", "2500.75", 999, 1, date(2018, 3, 4)),
    (7, "O'Brien", "obrien@example.com", None, "IE", "12.34", 42, 1, date(2021, 12, 31)),
    (10, "straße", "strasse@example.com", "München", "DE", "0.01", -5, 1, date(2016, 2, 29)),
    (42, "  leading space", None, "Abidjan", "CI", "4242.42", 42, 1, date(2022, 2, 22)),
    (99, "émile", "emile99@example.com", "Paris", None, "99.99", 99, 0, date(2023, 9, 9)),
    (100, "Zoe", "zoe100@example.com", "Wien", "AT", "100.00", 100, 1, date(2020, 5, 17)),
    (255, "ZOË", "zoe255@example.com", "Madrid", "ES", "255.00", None, 1, date(2017, 7, 7)),
    (256, "Emile", "emile256@example.com", "Tokyo", "JP", "-256.00", 256, 1, date(2015, 1, 1)),
    (1000, "Smith", "smith1000@example.com", "New York", "US", "1000.00", 1000, 1,
     date(2024, 12, 31)),
    (65535, "Søren", "soren@example.com", "Århus", "DK", "65535.35", 35, 0, date(2019, 1, 15)),
    (65536, "Łukasz", None, "Łódź", "PL", "0.00", None, 1, None),
    (4294967295, "Ana 😀", "ana.smile@example.com", "São Paulo", "BR", "-0.01", -100, 1,
     date(2021, 3, 3)),
    (4294967296, "Ana 🎉", "ana.party@example.com", "São Paulo", "BR", "9999999999.99", 500, 1,
     date(2021, 3, 4)),
    (123456789012, "李雷", "lilei@example.com", "Tokyo", "CN", "1234.56", 7, 1,
     date(2022, 8, 8)),
    (9007199254740991, "Nguyễn Văn An", "an@example.com", None, "VN", "-9999999999.99", 1, 1,
     date(2023, 1, 1)),
    (9007199254740992, "Müller", "mueller@example.com", "Berlin", "DE", "77.70", 77, 1,
     date(2018, 11, 11)),
]

# (customer id, number of orders) for the heavy customers; None = a random customer.
HEAVY = [(5, 80), (42, 60), (4294967296, 55), (9007199254740992, 120),
         (None, 70), (None, 65), (None, 58), (None, 52), (None, 51), (None, 50)]


# Positions of DECIMAL columns: their values are generated as exact SQL literals ("12.30").
DECIMAL_COLUMNS = {"customers": {5}, "orders": {4}, "events": set()}


def pick(rng, weighted):
    values = [v for v, w in weighted]
    weights = [w for v, w in weighted]
    return rng.choices(values, weights=weights, k=1)[0]


def sql(value):
    if value is None:
        return "NULL"
    if isinstance(value, bool):
        return "1" if value else "0"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, datetime):
        return "'" + value.strftime("%Y-%m-%d %H:%M:%S") + "'"
    if isinstance(value, date):
        return "'" + value.isoformat() + "'"
    text = str(value)
    if "\\" in text:
        raise ValueError(f"backslashes are not portable across sql_modes: {text!r}")
    return "'" + text.replace("'", "''") + "'"


def slug(name):
    out = []
    for ch in name.lower():
        if "a" <= ch <= "z" or "0" <= ch <= "9":
            out.append(ch)
    return "".join(out) or "user"


def customer_ids(rng):
    reserved = set(range(3000000001, 3000001000))
    anchor_ids = {a[0] for a in ANCHORS}
    ids = set(anchor_ids)
    ids.update(rng.sample(range(1, 1501), 700))
    mid = set()
    while len(mid) < 500:
        mid.add(rng.randrange(10_000, 10_000_000))
    ids.update(mid)
    while len(ids) < N_CUSTOMERS:
        candidate = rng.randrange(2**32, 2**53 + 1)
        if candidate not in reserved:
            ids.add(candidate)
    ids -= reserved
    assert len(ids) == N_CUSTOMERS, len(ids)
    return sorted(ids)


def gen_customers(rng):
    rows = {a[0]: a for a in ANCHORS}
    for cid in customer_ids(rng):
        if cid in rows:
            continue
        name = pick(rng, NAMES)
        r = rng.random()
        if r < 0.10:
            email = None
        elif r < 0.13:
            email = "shared@example.com"
        else:
            email = f"{slug(name)}{cid % 100000}@example.com"
        city = None if rng.random() < 0.10 else pick(rng, CITIES)
        cc = None if rng.random() < 0.10 else pick(rng, COUNTRY_CODES)
        r = rng.random()
        if r < 0.15:
            balance = rng.choice(["0.00", "100.00", "50.50", "-20.00", "1000.00"])
        else:
            cents = rng.randrange(-50_000, 1_000_000)
            sign = "-" if cents < 0 else ""
            balance = f"{sign}{abs(cents) // 100}.{abs(cents) % 100:02d}"
        score = None if rng.random() < 0.10 else rng.choice(range(-100, 1001, 7))
        active = 1 if rng.random() < 0.85 else 0
        created = None if rng.random() < 0.10 else date(2015, 1, 1) + timedelta(
            days=rng.randrange(0, 3650))
        rows[cid] = (cid, name, email, city, cc, balance, score, active, created)
    return [rows[k] for k in sorted(rows)]


def gen_orders(rng, customers):
    ids = [c[0] for c in customers]
    anchor_ids = {a[0] for a in ANCHORS}
    heavy_fixed = {cid for cid, _ in HEAVY if cid is not None}
    others = [i for i in ids if i not in heavy_fixed]
    per_customer = {}
    for cid, n in HEAVY:
        if cid is None:
            cid = rng.choice([i for i in others if i not in per_customer and i not in anchor_ids])
        per_customer[cid] = n
    # Anchors without explicit counts: a few orders each, except 2, 7 and 65536 (none).
    for cid in sorted(anchor_ids - set(per_customer) - {2, 7, 65536}):
        per_customer[cid] = rng.randrange(1, 6)
    assignable = [i for i in ids if i not in per_customer and i not in anchor_ids]
    # About half of the remaining customers get no order at all.
    with_orders = [i for i in assignable if rng.random() < 0.5]
    orphans = 20
    remaining = N_ORDERS - sum(per_customer.values()) - orphans
    for cid in with_orders:
        per_customer[cid] = 1
    remaining -= len(with_orders)
    assert remaining >= 0, remaining
    while remaining > 0:
        cid = rng.choice(with_orders)
        per_customer[cid] += 1
        remaining -= 1

    owner = []
    for cid in sorted(per_customer):
        owner.extend([cid] * per_customer[cid])
    for i in range(orphans):
        owner.append(ORPHAN_CUSTOMER_IDS[i % len(ORPHAN_CUSTOMER_IDS)])
    rng.shuffle(owner)
    order_ids = rng.sample(range(1, 20001), N_ORDERS)
    start = datetime(2020, 1, 1)
    rows = []
    for oid, cid in zip(order_ids, owner):
        product_id = rng.randrange(51, 56) if rng.random() < 0.03 else rng.randrange(1, 51)
        qty = rng.choice([1, 1, 1, 2, 2, 3, 5, 10]) if rng.random() < 0.7 else rng.randrange(1, 51)
        price = rng.choice(PRICES)
        status = pick(rng, STATUSES)
        note = None if rng.random() < 0.30 else pick(rng, NOTES)
        # Whole hours only, so that timestamps repeat.
        created = start + timedelta(hours=rng.randrange(0, 5 * 365 * 24 // 6) * 6)
        rows.append((oid, cid, product_id, qty, price, status, note, created))
    rows.sort(key=lambda r: r[0])
    return rows


def gen_events(rng, customers):
    ids = [c[0] for c in customers]
    weights = [40 if cid in (5, 42, 4294967296) else (3 if cid % 3 == 0 else 1) for cid in ids]
    owners = rng.choices(ids, weights=weights, k=N_EVENTS)
    event_ids = set()
    while len(event_ids) < N_EVENTS:
        event_ids.add(rng.choice([rng.randrange(1, 5000), rng.randrange(10_000_000, 2**40)]))
    rows = []
    for eid, cid in zip(sorted(event_ids), owners):
        kind = None if rng.random() < 0.10 else pick(rng, KINDS)
        payload = None if rng.random() < 0.10 else rng.choice(PAYLOADS)
        rows.append((eid, cid, kind, payload))
    return rows


def inserts(table, columns, rows, rng):
    rows = list(rows)
    # Not in key order: routing must not depend on the rows arriving sorted.
    rng.shuffle(rows)
    out = []
    for start in range(0, len(rows), ROWS_PER_INSERT):
        chunk = rows[start:start + ROWS_PER_INSERT]
        decimals = DECIMAL_COLUMNS[table]
        values = ", ".join(
            "(" + ", ".join(v if i in decimals and v is not None else sql(v)
                            for i, v in enumerate(row)) + ")"
            for row in chunk)
        out.append(f"INSERT INTO {table} ({', '.join(columns)}) VALUES {values};")
    return out


def main():
    rng = random.Random(SEED)
    customers = gen_customers(rng)
    orders = gen_orders(rng, customers)
    events = gen_events(rng, customers)
    lines = [
        "-- Rows of the sharded tables of keyspace `user`, one INSERT of up to "
        f"{ROWS_PER_INSERT} rows per line.",
        "-- Generated by tests/differential/gen_data.py (seed "
        f"{SEED}); do not edit by hand.",
        f"-- customers: {len(customers)}, orders: {len(orders)}, events: {len(events)}",
    ]
    lines += inserts("customers", ["id", "name", "email", "city", "country_code", "balance",
                                   "score", "active", "created"], customers, rng)
    lines += inserts("orders", ["id", "customer_id", "product_id", "qty", "price", "status",
                                "note", "created"], orders, rng)
    lines += inserts("events", ["id", "customer_id", "kind", "payload"], events, rng)
    sys.stdout.write("\n".join(lines) + "\n")


if __name__ == "__main__":
    main()
