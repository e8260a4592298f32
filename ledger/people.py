"""People and their roles, from the people file named in the config (`people:`, docs/lifecycle.md).

    people:
      - {id: fiona, name: Fiona Finch, email: fiona@example.com, role: finance}
      - {id: carl, name: Carl Case, email: carl@example.com, role: customer_success}

Roles: finance (approves, issues, voids, credits), customer_success (approves the customers whose
CSM they are; adds manual charges for them), sales (adds manual charges), auditor (reads everything,
changes nothing). The same person file serves the CLI and the review desk.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import yaml

ROLES = ("finance", "customer_success", "sales", "auditor")
SYSTEM = "system"  # the actor of scheduled actions (auto-issue); not a person of the file


@dataclass(frozen=True)
class Person:
    person_id: str
    name: str
    email: str
    role: str

    def describe(self) -> str:
        return f"{self.person_id} ({self.role})"


class PeopleError(ValueError):
    pass


def load_people(path: Path | None) -> dict[str, Person]:
    """Every person of the file, by id; refuses unknown roles, missing fields and repeated ids."""
    if path is None:
        return {}
    if not path.is_file():
        raise PeopleError(f"people file {path} not found (config `people:` or BILLING_PEOPLE)")
    doc = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    entries = doc.get("people") if isinstance(doc, dict) else doc
    if not isinstance(entries, list):
        raise PeopleError(f"{path}: expected `people:` with a list of {{id, name, email, role}}")
    people: dict[str, Person] = {}
    for index, entry in enumerate(entries, 1):
        if not isinstance(entry, dict):
            raise PeopleError(f"{path}: person #{index} is not a mapping")
        unknown = sorted(set(entry) - {"id", "name", "email", "role"})
        if unknown:
            raise PeopleError(f"{path}: person #{index} has unknown key(s) {', '.join(unknown)} "
                              "(known: id, name, email, role)")
        missing = [k for k in ("id", "name", "email", "role") if not entry.get(k)]
        if missing:
            raise PeopleError(f"{path}: person #{index} lacks {', '.join(missing)}")
        person = Person(str(entry["id"]), str(entry["name"]), str(entry["email"]), str(entry["role"]))
        if person.role not in ROLES:
            raise PeopleError(f"{path}: {person.person_id} has role {person.role!r}; roles are {', '.join(ROLES)}")
        if person.person_id in people or person.person_id == SYSTEM:
            raise PeopleError(f"{path}: person id {person.person_id!r} is used twice (or is reserved)")
        people[person.person_id] = person
    return people


def system_actor() -> Person:
    """The actor of actions the schedule takes by itself (issuing invoices that need no approval)."""
    return Person(SYSTEM, "billing schedule", "", "finance")
