"""`billing serve` (the review desk) and `billing people set-password PERSON`."""

from __future__ import annotations

import argparse
import getpass
import sys

from core.config import Settings
from warehouse.store import open_warehouse


def add_parsers(sub: argparse._SubParsersAction) -> None:
    serve = sub.add_parser("serve", help="the review desk in the browser (README: Review desk)")
    serve.add_argument("--host", default="127.0.0.1")
    serve.add_argument("--port", type=int, default=8000)
    serve.add_argument("--secure-cookies", action="store_true", help="mark cookies Secure (behind HTTPS)")
    people = sub.add_parser("people", help="desk sign-in: set a person's password")
    psub = people.add_subparsers(dest="action", required=True)
    setp = psub.add_parser("set-password", help="store an argon2 hash of a new password for PERSON")
    setp.add_argument("person")
    setp.add_argument("--password-stdin", action="store_true", help="read the password from stdin (scripts)")


def dispatch(settings: Settings, args: argparse.Namespace) -> int | None:
    if args.command == "serve":
        import uvicorn

        from .app import create_app

        uvicorn.run(create_app(settings, secure_cookies=args.secure_cookies), host=args.host, port=args.port)
        return 0
    if args.command == "people":
        return set_password(settings, args.person, args.password_stdin)
    return None


def set_password(settings: Settings, person_id: str, from_stdin: bool) -> int:
    from ledger.people import load_people

    from .auth import set_password as store

    people = load_people(settings.lifecycle.people)
    if person_id not in people:
        print(f"error: {person_id!r} is not in the people file ({settings.lifecycle.people or 'none configured'}); "
              f"people: {', '.join(sorted(people)) or 'none'}", file=sys.stderr)
        return 1
    if from_stdin:
        password = sys.stdin.readline().rstrip("\n")
    else:
        password = getpass.getpass(f"new password for {person_id}: ")
        if getpass.getpass("again: ") != password:
            print("error: the two passwords differ; nothing stored", file=sys.stderr)
            return 1
    try:
        store(open_warehouse(settings), person_id, password)
    except ValueError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    print(f"password set for {person_id}")
    return 0
