"""`billing webhooks`: deliver the ledger's events to the webhook endpoints, and show where they stand.

    billing webhooks deliver [--once]                      one round, then exit
    billing webhooks deliver --watch [--interval S] [--for S]   a round every S seconds, for a while
    billing webhooks status                                 per endpoint: delivered, pending, dead letters

Exit status: 0, or 3 when an event ran out of attempts (a dead letter that needs a person). Data from
the warehouse and from receivers is printed as plain text (never as markup). docs/webhooks.md.
"""

from __future__ import annotations

import argparse
import time
from datetime import UTC

from core.config import Settings
from ledger.webhooks import Summary, dispatch, endpoints_from_config, status
from warehouse.store import open_warehouse

DEAD_LETTERS = 3  # exit status when an event ran out of attempts


def add_arguments(parser: argparse.ArgumentParser) -> None:
    action = parser.add_subparsers(dest="webhooks_action", required=True)
    deliver = action.add_parser("deliver", help="POST undelivered events, in order, with retries and backoff")
    mode = deliver.add_mutually_exclusive_group()
    mode.add_argument("--once", action="store_true", help="one round, then exit (the default)")
    mode.add_argument("--watch", action="store_true", help="a round every --interval seconds, for --for seconds")
    deliver.add_argument("--interval", type=float, default=10.0, help="seconds between rounds (default 10)")
    deliver.add_argument("--for", dest="duration", type=float, default=3600.0,
                         help="stop watching after this many seconds (default 3600; run it again from a scheduler)")
    deliver.add_argument("--max-events", type=int, default=None, help="at most this many attempts per endpoint "
                                                                      "and round")
    action.add_parser("status", help="per endpoint: events delivered, pending and dead")


def main(settings: Settings, args: argparse.Namespace) -> int:
    endpoints = endpoints_from_config(settings.lifecycle.webhooks)
    if not endpoints:
        print("no webhook endpoints are configured (webhooks: in billing.yaml, docs/webhooks.md)")
        return 0
    warehouse = open_warehouse(settings)
    if args.webhooks_action == "status":
        return _status(warehouse, endpoints)
    if args.interval <= 0 or args.duration < 0:
        raise ValueError("--interval must be above 0 and --for 0 or more")
    if not args.watch:
        summary = dispatch(warehouse, endpoints, max_events=args.max_events)
        _report(summary, quiet=False)
        return DEAD_LETTERS if summary.dead else 0
    deadline = time.monotonic() + args.duration
    dead: set[tuple[str, str]] = set()
    try:
        while True:  # bounded by the deadline
            summary = dispatch(warehouse, endpoints, max_events=args.max_events)
            _report(summary, quiet=True, known_dead=dead)
            dead |= {(d.endpoint, d.event_id) for d in summary.dead}
            left = deadline - time.monotonic()
            if left <= 0:
                break
            time.sleep(min(args.interval, left))
    except KeyboardInterrupt:
        print("stopped")
    return DEAD_LETTERS if dead else 0


def _report(summary: Summary, *, quiet: bool, known_dead: set[tuple[str, str]] = frozenset()) -> None:
    """What a round did; `quiet` (watch mode) prints nothing for a round that did nothing new."""
    if summary.busy:
        if not quiet:
            print("another dispatcher is delivering to these endpoints; nothing done")
        return
    for a in summary.attempts:
        outcome = f"delivered (HTTP {a.status_code})" if a.delivered else f"failed: {a.error}"
        print(f"{a.endpoint}: {a.event_type} {a.event_id} (seq {a.seq}) attempt {a.attempt}: {outcome}")
    for w in summary.waiting:
        if w.attempts and not quiet:
            print(f"{w.endpoint}: {w.event_id} and later events wait; next attempt ({w.attempts + 1}) "
                  f"at {w.next_attempt_at.astimezone(UTC):%Y-%m-%d %H:%M:%S} UTC")
    for d in summary.dead:
        if (d.endpoint, d.event_id) not in known_dead:
            print(f"{d.endpoint}: DEAD {d.event_type} {d.event_id} (seq {d.seq}) after {d.attempts} attempts; "
                  f"last error: {d.last_error}")
    if not quiet and not summary.attempts and not summary.dead:
        print("nothing to deliver")


def _status(warehouse, endpoints) -> int:
    dead_total = 0
    for row in status(warehouse, endpoints):
        print(f"{row['endpoint']} ({row['url']}): {row['delivered']} delivered, {row['pending']} pending, "
              f"{len(row['dead'])} dead")
        for d in row["dead"]:
            print(f"  DEAD {d.event_type} {d.event_id} (seq {d.seq}) after {d.attempts} attempts; "
                  f"last error: {d.last_error}")
        dead_total += len(row["dead"])
    return DEAD_LETTERS if dead_total else 0
