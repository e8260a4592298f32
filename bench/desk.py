"""How fast the review desk answers: the period page and the largest invoice's page of the latest
billed month (run `make demo` first), served in-process, timed over repeated requests.

    make bench-desk            (python -m bench.desk [--repeat 20])

Prints figures; asserts nothing (the issue's target: under 200 ms each on the demo month).
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time

from warehouse.store import open_warehouse


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeat", type=int, default=20)
    parser.add_argument("--config")
    args = parser.parse_args(argv)

    from fastapi.testclient import TestClient

    from core.config import load_settings
    from desk.app import SESSION_COOKIE, create_app
    from desk.auth import open_session, sign_out
    from ledger.people import load_people

    settings = load_settings(args.config)
    warehouse = open_warehouse(settings)
    people = load_people(settings.lifecycle.people)
    finance = [p for p in people.values() if p.role == "finance"]
    if not finance:
        print("no finance person in the people file: run `make demo` first", file=sys.stderr)
        return 1
    app = create_app(settings)
    with warehouse.transaction() as tx:
        periods = [r[0] for r in tx.fetchall("SELECT DISTINCT period FROM marts.fct_invoices ORDER BY 1 DESC")]
        if not periods:
            print("no billed month: run `make demo` first", file=sys.stderr)
            return 1
        period = periods[0]
        account, currency, lines = tx.fetchall(
            "SELECT billing_account_id, currency, count(*) FROM marts.fct_invoice_lines WHERE period = ? "
            "GROUP BY 1, 2 ORDER BY 3 DESC, 1 LIMIT 1", [period])[0]
        drafts = tx.fetchall("SELECT count(*) FROM marts.fct_invoices WHERE period = ?", [period])[0][0]
        session_id, session = open_session(tx, finance[0].person_id, "bench")
    client = TestClient(app)
    client.cookies.set(SESSION_COOKIE, session_id)
    pages = {f"period page ({drafts} drafts)": f"/periods/{period}",
             f"invoice page ({account}, {lines} lines)": f"/periods/{period}/invoices/{account}?currency={currency}",
             "waiting for me": "/"}
    print(f"review desk on {warehouse.describe()}, {period}, as {finance[0].person_id}; {args.repeat} requests each")
    try:
        for name, path in pages.items():
            assert client.get(path).status_code == 200, path  # warm-up (imports, caches)
            times = []
            for _ in range(args.repeat):
                start = time.perf_counter()
                answer = client.get(path)
                times.append((time.perf_counter() - start) * 1000)
                assert answer.status_code == 200
            times.sort()
            print(f"  {name:<40} median {statistics.median(times):7.1f} ms   p90 "
                  f"{times[int(len(times) * 0.9) - 1]:7.1f} ms   max {times[-1]:7.1f} ms")
    finally:
        sign_out(warehouse, session)
    return 0


if __name__ == "__main__":
    sys.exit(main())
