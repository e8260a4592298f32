"""Who may do what, and what a draft still needs before it can be issued (docs/lifecycle.md).

Pure rules over people, approvals and a draft: no database here, so the CLI, the review desk and
tests ask the same questions and get the same answers, each refusal naming who may act instead.
"""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal

from core.config import ApprovalPolicy

from .people import Person


class Refused(PermissionError):
    """An action the rules do not allow; the message says why and who may."""


@dataclass(frozen=True)
class CustomerTerms:
    billing_account_id: str
    csm: str | None = None
    require_csm_approval: bool = False


@dataclass(frozen=True)
class Approval:
    person_id: str
    role: str
    decision: str            # approved | rejected
    comment: str | None
    draft_fingerprint: str


def names(people: list[Person]) -> str:
    return ", ".join(p.describe() for p in people) or "nobody in the people file"


def finance(people: dict[str, Person]) -> list[Person]:
    return [p for p in people.values() if p.role == "finance"]


def require_role(person: Person, roles: tuple[str, ...], what: str, people: dict[str, Person]) -> None:
    if person.role not in roles:
        may = [p for p in people.values() if p.role in roles]
        raise Refused(f"{person.describe()} may not {what}: only {' or '.join(roles)} may ({names(may)})")


def may_approve(person: Person, terms: CustomerTerms, makers: set[str], people: dict[str, Person]) -> None:
    """Finance approves any invoice; a customer's CSM approves that customer's; makers never their own."""
    approvers = [p for p in people.values()
                 if (p.role == "finance" or (p.role == "customer_success" and p.person_id == terms.csm))
                 and p.person_id not in makers]
    if person.person_id in makers:
        raise Refused(f"{person.describe()} added a manual charge or price override to this invoice and cannot "
                      f"approve it; who may: {names(approvers)}")
    if person.role == "finance":
        return
    if person.role == "customer_success" and person.person_id == terms.csm:
        return
    if person.role == "customer_success":
        raise Refused(f"{person.describe()} is not the CSM of {terms.billing_account_id} "
                      f"(its CSM is {terms.csm or 'not set'}); who may approve: {names(approvers)}")
    raise Refused(f"{person.describe()} may not approve invoices ({person.role}s change nothing); "
                  f"who may: {names(approvers)}")


def may_add_manual_line(person: Person, terms: CustomerTerms, people: dict[str, Person]) -> None:
    if person.role in ("finance", "sales"):
        return
    if person.role == "customer_success" and person.person_id == terms.csm:
        return
    may = [p for p in people.values() if p.role in ("finance", "sales")
           or (p.role == "customer_success" and p.person_id == terms.csm)]
    raise Refused(f"{person.describe()} may not add charges or price overrides to {terms.billing_account_id}'s "
                  f"invoice; who may: {names(may)}")


def current_decisions(approvals: list[Approval], fingerprint: str) -> dict[str, Approval]:
    """Each person's latest decision on this exact draft (approvals of an older draft have lapsed)."""
    latest: dict[str, Approval] = {}
    for a in approvals:  # in decision order
        if a.draft_fingerprint == fingerprint:
            latest[a.person_id] = a
    return latest


def missing_approvals(policy: ApprovalPolicy, terms: CustomerTerms, total: Decimal, currency: str,
                      approvals: list[Approval], fingerprint: str, people: dict[str, Person],
                      makers: set[str]) -> list[str]:
    """What the draft still needs, in words naming who may give it; empty when the policy is met."""
    if terms.billing_account_id in policy.no_approval_customers:
        return []
    decisions = current_decisions(approvals, fingerprint)
    rejected = [a for a in decisions.values() if a.decision == "rejected"]
    approved = {pid for pid, a in decisions.items() if a.decision == "approved" and pid not in makers}
    needs = [f"rejected by {a.person_id}: {a.comment or 'no comment'} (that person's approval is needed)"
             for a in rejected]
    finance_ok = [pid for pid in approved if people.get(pid) and people[pid].role == "finance"]
    if len(finance_ok) < policy.finance_approvals:
        may = [p for p in finance(people) if p.person_id not in approved and p.person_id not in makers]
        needs.append(f"{policy.finance_approvals - len(finance_ok)} more finance approval(s): {names(may)}")
    if policy.csm_when_required and terms.require_csm_approval:
        if not terms.csm:
            needs.append(f"its CSM's approval, but {terms.billing_account_id} has no csm in the catalog")
        elif terms.csm not in approved:
            csm = people.get(terms.csm)
            needs.append(f"the approval of its CSM {csm.describe() if csm else terms.csm}")
    threshold = policy.two_approvers_from.get(currency)
    if threshold is not None and total >= threshold and len(approved) < 2:
        may = [p for p in people.values() if p.person_id not in approved and p.person_id not in makers
               and (p.role == "finance" or (p.role == "customer_success" and p.person_id == terms.csm))]
        needs.append(f"two distinct approvers from {threshold} {currency} ({len(approved)} so far): {names(may)}")
    return needs
