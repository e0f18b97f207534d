"""SQLAlchemy against a sharded keyspace through the sidecar: reflection (tables, columns,
primary keys, indexes) and a few ORM-style Core queries, printed as JSON for the Rust test.

Usage: reflect.py PORT DATABASE
"""

import json
import sys

from sqlalchemy import create_engine, func, inspect, select, MetaData, Table


def main() -> None:
    port, db = int(sys.argv[1]), sys.argv[2]
    engine = create_engine(f"mysql+pymysql://app:app@127.0.0.1:{port}/{db}?charset=utf8mb4")
    insp = inspect(engine)
    out = {"tables": sorted(insp.get_table_names())}
    out["columns"] = {t: [c["name"] for c in insp.get_columns(t)] for t in out["tables"]}
    out["pk"] = {t: insp.get_pk_constraint(t)["constrained_columns"] for t in out["tables"]}
    out["indexes"] = {t: sorted(i["name"] for i in insp.get_indexes(t)) for t in out["tables"]}
    meta = MetaData()
    customer = Table("customer", meta, autoload_with=engine)
    with engine.begin() as conn:
        conn.execute(customer.insert(), [{"id": 501, "name": "Orm", "city": "Oslo"},
                                         {"id": 502, "name": "Rel", "city": "Oslo"}])
    with engine.connect() as conn:
        out["count"] = conn.execute(select(func.count()).select_from(customer)).scalar_one()
        out["oslo"] = [r.name for r in conn.execute(
            select(customer.c.name).where(customer.c.city == "Oslo").order_by(customer.c.id))]
        out["one"] = conn.execute(select(customer.c.name).where(customer.c.id == 502)).scalar_one()
    print(json.dumps(out))


if __name__ == "__main__":
    main()
