"""Read and validate a catalog YAML file (format: docs/catalog.md).

Validation is all-or-nothing: `load_catalog` either returns a complete `Catalog` or raises
`CatalogError` naming the file, the entry and what to fix. Nothing is written anywhere here.
"""

from __future__ import annotations

import difflib
from collections.abc import Iterable
from datetime import date
from decimal import Decimal, InvalidOperation
from pathlib import Path
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import yaml

from core.enums import AGGREGATIONS, DEFAULT_AGGREGATION
from core.enums import PRICING_MODELS as MODELS
from core.money import FEE, MINOR_UNITS, PRICE, QUANTITY, Digits

from .model import (
    AccountProduct,
    Catalog,
    Contract,
    Customer,
    Price,
    Product,
    Rate,
    RateClass,
    Tier,
)

# What each kind of entry may hold (docs/catalog.md). Any other key is refused, naming the nearest
# known one: a misspelt key (`included` for `included_units`) must never be ignored silently.
SECTIONS = ("products", "rate_classes", "customers", "contracts", "account_products")
# libyaml's safe loader when PyYAML has it (its wheels do): parses the same documents ~10x faster than the
# pure-Python one, which took ~1 s of every run on the demo's 240-customer catalog.
SAFE_LOADER = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
PRICE_FIELDS = {  # the fields of a price besides `model`, per model
    "per_unit": ("unit_price", "included_units"),
    "graduated": ("tiers", "included_units"),
    "volume": ("tiers", "included_units"),
    "package": ("package_size", "package_price", "included_units"),
    "flat_fee": ("amount",),
}
PRICE_KEYS = ("model", *sorted({f for fields in PRICE_FIELDS.values() for f in fields}))
_OWN_RANGE = ("id", "effective_from", "effective_to")
KEYS: dict[str, tuple[str, ...]] = {
    "products": ("code", "name", "unit", "aggregation", "prices"),
    "products.prices": ("currency", *_OWN_RANGE, *PRICE_KEYS),
    "rate_classes": ("id", "name", "currency", "prices"),
    "rate_classes.prices": ("product", *_OWN_RANGE, *PRICE_KEYS),
    "customers": ("id", "name", "currency", "timezone", "bill_to", "rate_class", "active_from", "active_to",
                  "csm", "require_csm_approval"),
    "contracts": ("id", "customer", "currency", "rate_class", "effective_from", "effective_to",
                  "minimum_commitment", "rates"),
    "contracts.rates": ("product", *_OWN_RANGE, *PRICE_KEYS),
    "account_products": ("customer", "product", *_OWN_RANGE, "currency", *PRICE_KEYS),
    "tiers": ("up_to", "unit_price", "flat_fee"),
}
_KIND_NAMES = {"products": "a product", "products.prices": "a product's price", "rate_classes": "a rate class",
               "rate_classes.prices": "a rate class's price", "customers": "a customer", "contracts": "a contract",
               "contracts.rates": "a contract's rate", "account_products": "an account product", "tiers": "a tier"}


def unknown_key(key: object, known: Iterable[str], what: str) -> str:
    """'unknown key ...' with the nearest known key (difflib) and the list of known ones."""
    known = sorted(known)
    nearest = difflib.get_close_matches(str(key), known, n=1, cutoff=0)
    return (f"unknown key '{key}' in {what}; the nearest known key is '{nearest[0]}' "
            f"(known keys: {', '.join(known)}; docs/catalog.md)")


class CatalogError(ValueError):
    """A catalog entry that cannot be loaded; the message says where and what to fix."""

    def __init__(self, path: Path | str, where: str, problem: str):
        super().__init__(f"{path}: {where}: {problem}")
        self.path, self.where, self.problem = str(path), where, problem


class _Reader:
    def __init__(self, path: Path):
        self.path = path

    def fail(self, where: str, problem: str) -> CatalogError:
        return CatalogError(self.path, where, problem)

    def text(self, entry: dict, key: str, where: str, *, required: bool = True) -> str | None:
        value = entry.get(key)
        if value is None or (isinstance(value, str) and not value.strip()):
            if required:
                raise self.fail(where, f"'{key}' is required")
            return None
        return str(value).strip()

    def decimal(self, entry: dict, key: str, where: str, digits: Digits, *, required: bool = True):
        """A non-negative decimal that `digits` keeps exactly (core/money.py), else a CatalogError."""
        value = entry.get(key)
        if value is None:
            if required:
                raise self.fail(where, f"'{key}' is required")
            return None
        if isinstance(value, float):
            # YAML floats are binary; demand the exact digits as a string or integer.
            raise self.fail(where, f"'{key}: {value}' is a binary float; write it quoted, e.g. '{key}: \"{value}\"'")
        try:
            number = Decimal(str(value).strip())
        except InvalidOperation:
            raise self.fail(where, f"'{key}' must be a decimal number, got {value!r}") from None
        if not number.is_finite():
            raise self.fail(where, f"'{key}' must be a finite number, got {value!r}")
        if number < 0:
            raise self.fail(where, f"'{key}' must not be negative, got {value}")
        if (problem := digits.problem(number)) is not None:
            # Stored, it would be rounded or overflow: refuse it rather than bill another number.
            raise self.fail(where, f"'{key}: {value}' {problem}")
        return number

    def day(self, entry: dict, key: str, where: str, *, required: bool = False) -> date | None:
        value = entry.get(key)
        if value is None:
            if required:
                raise self.fail(where, f"'{key}' is required (a date such as 2026-01-01)")
            return None
        if isinstance(value, date):
            return value
        try:
            return date.fromisoformat(str(value))
        except ValueError:
            raise self.fail(where, f"'{key}' must be a date YYYY-MM-DD, got {value!r}") from None

    def currency(self, entry: dict, key: str, where: str, *, required: bool = True) -> str | None:
        code = self.text(entry, key, where, required=required)
        if code is None:
            return None
        if code not in MINOR_UNITS:
            raise self.fail(where, f"'{key}: {code}' is not an ISO 4217 currency code (e.g. USD, EUR, JPY)")
        return code

    def only(self, entry: dict, kind: str, where: str) -> None:
        """Refuse a key that entries of this kind (KEYS) do not have."""
        for key in entry:
            if key not in KEYS[kind]:
                raise self.fail(where, unknown_key(key, KEYS[kind], _KIND_NAMES[kind]))

    def entries(self, doc: dict, section: str, kind: str | None = None, within: str = "") -> list[tuple[str, dict]]:
        """The entries of a list section, each checked for unknown keys (KEYS[kind], default: section);
        `within` is the containing entry's place (`products[0]`), for the messages."""
        section_where = f"{within}.{section}" if within else section
        items = doc.get(section) or []
        if not isinstance(items, list):
            raise self.fail(section_where, "must be a list of entries")
        out = []
        for i, item in enumerate(items):
            if not isinstance(item, dict):
                raise self.fail(f"{section_where}[{i}]", "must be a mapping of fields")
            self.only(item, kind or section, f"{section_where}[{i}]")
            out.append((f"{section_where}[{i}]", item))
        return out

    def price(self, entry: dict, where: str) -> Price:
        model = self.text(entry, "model", where)
        if model not in MODELS:
            raise self.fail(where, f"'model: {model}' is not one of {', '.join(MODELS)}")
        for key in entry:
            if key in PRICE_KEYS and key != "model" and key not in PRICE_FIELDS[model]:
                raise self.fail(where, f"'{key}' is not a field of a {model} price, which takes "
                                       f"{', '.join(('model', *PRICE_FIELDS[model]))}")
        included = self.decimal(entry, "included_units", where, QUANTITY, required=False) or Decimal(0)
        if model == "per_unit":
            return Price(model, tiers=(Tier(None, self.decimal(entry, "unit_price", where, PRICE)),), included_units=included)
        if model in ("graduated", "volume"):
            return Price(model, tiers=self.tiers(entry, where), included_units=included)
        if model == "package":
            size = self.decimal(entry, "package_size", where, QUANTITY)
            if size != size.to_integral_value() or size <= 0:
                raise self.fail(where, f"'package_size' must be a whole number of units above 0, got {size}")
            return Price(
                model,
                package_size=int(size),
                package_price=self.decimal(entry, "package_price", where, PRICE),
                included_units=included,
            )
        return Price(model, flat_amount=self.decimal(entry, "amount", where, FEE))

    def tiers(self, entry: dict, where: str) -> tuple[Tier, ...]:
        raw = entry.get("tiers")
        if not isinstance(raw, list) or not raw:
            raise self.fail(where, "'tiers' must be a non-empty list of {up_to, unit_price, flat_fee}")
        tiers, previous = [], Decimal(0)
        for i, tier in enumerate(raw):
            tw = f"{where}.tiers[{i}]"
            if not isinstance(tier, dict):
                raise self.fail(tw, "must be a mapping with up_to and unit_price")
            self.only(tier, "tiers", tw)
            up_to = self.decimal(tier, "up_to", tw, QUANTITY, required=False)
            last = i == len(raw) - 1
            if up_to is None and not last:
                raise self.fail(tw, "only the last tier may be unbounded (leave out 'up_to' there only)")
            if up_to is not None and last:
                raise self.fail(tw, "the last tier must be unbounded: remove its 'up_to' so no quantity is left unpriced")
            if up_to is not None and up_to <= previous:
                raise self.fail(tw, f"'up_to: {up_to}' must be above the previous tier's bound {previous}")
            tiers.append(
                Tier(
                    up_to,
                    self.decimal(tier, "unit_price", tw, PRICE),
                    self.decimal(tier, "flat_fee", tw, FEE, required=False) or Decimal(0),
                )
            )
            previous = up_to if up_to is not None else previous
        return tuple(tiers)


def load_catalog(path: str | Path, content: bytes | None = None) -> Catalog:
    """Load and validate the catalog at `path`; raise CatalogError on the first problem.

    `content`: the file's bytes when the caller already read them (catalog/land.py validates exactly
    the bytes it hashes); errors still name `path`."""
    path = Path(path)
    if content is None and not path.is_file():
        raise CatalogError(path, "file", "not found (set BILLING_CATALOG or 'catalog' in billing.yaml)")
    try:
        text = (path.read_bytes() if content is None else content).decode("utf-8")
    except UnicodeDecodeError as exc:
        raise CatalogError(path, "file", f"is not UTF-8 text ({exc}); save it as UTF-8") from None
    try:
        doc = yaml.load(text, Loader=SAFE_LOADER) or {}
    except yaml.YAMLError as exc:
        raise CatalogError(path, "file", f"is not valid YAML: {exc}") from None
    if not isinstance(doc, dict):
        raise CatalogError(path, "file", "must be a mapping with products, customers, ... sections")
    r = _Reader(path)
    for key in doc:
        if key not in SECTIONS:
            raise r.fail("file", unknown_key(key, SECTIONS, "the catalog (its sections)"))
    cat = Catalog()

    def unique(table: dict, key: str, where: str, what: str) -> str:
        if key in table:
            raise r.fail(where, f"{what} '{key}' is defined twice")
        return key

    def add_rate(rate: Rate, where: str) -> None:
        if rate.rate_id in cat.rates:
            raise r.fail(where, f"rate id '{rate.rate_id}' is used twice; give this price its own 'id'")
        if rate.effective_from and rate.effective_to and rate.effective_to <= rate.effective_from:
            raise r.fail(where, "'effective_to' must be after 'effective_from' (ranges are [from, to))")
        cat.rates[rate.rate_id] = rate

    for where, e in r.entries(doc, "products"):
        pid = unique(cat.products, r.text(e, "code", where), where, "product")
        aggregation = r.text(e, "aggregation", where, required=False) or DEFAULT_AGGREGATION
        if aggregation not in AGGREGATIONS:
            raise r.fail(where, f"'aggregation: {aggregation}' is not one of {', '.join(AGGREGATIONS)}")
        cat.products[pid] = Product(pid, r.text(e, "name", where, required=False) or pid,
                                    r.text(e, "unit", where, required=False) or "unit", aggregation)
        for j, (pw, pe) in enumerate(r.entries(e, "prices", "products.prices", where)):
            currency = r.currency(pe, "currency", pw)
            add_rate(Rate(pe.get("id") or f"default:{pid}:{currency}:{j + 1}", "product_default", pid, currency,
                          r.price(pe, pw), r.day(pe, "effective_from", pw), r.day(pe, "effective_to", pw)), pw)

    def product_ref(e: dict, where: str) -> str:
        pid = r.text(e, "product", where)
        if pid not in cat.products:
            raise r.fail(where, f"unknown product '{pid}' (define it under products first)")
        return pid

    for where, e in r.entries(doc, "rate_classes"):
        rcid = unique(cat.rate_classes, r.text(e, "id", where), where, "rate class")
        currency = r.currency(e, "currency", where)
        cat.rate_classes[rcid] = RateClass(rcid, r.text(e, "name", where, required=False) or rcid, currency)
        for j, (pw, pe) in enumerate(r.entries(e, "prices", "rate_classes.prices", where)):
            pid = product_ref(pe, pw)
            add_rate(Rate(pe.get("id") or f"rate_class:{rcid}:{pid}:{j + 1}", "rate_class", pid, currency,
                          r.price(pe, pw), r.day(pe, "effective_from", pw), r.day(pe, "effective_to", pw),
                          rate_class_id=rcid), pw)

    def rate_class_ref(e: dict, where: str) -> str | None:
        rcid = r.text(e, "rate_class", where, required=False)
        if rcid is not None and rcid not in cat.rate_classes:
            raise r.fail(where, f"unknown rate class '{rcid}' (define it under rate_classes)")
        return rcid

    def require_csm_approval(e: dict, where: str) -> bool:
        value = e.get("require_csm_approval", False)
        if not isinstance(value, bool):
            raise r.fail(where, f"'require_csm_approval: {value}' must be true or false")
        if value and not e.get("csm"):
            raise r.fail(where, "require_csm_approval is true but no csm (a person id of the people file) is given")
        return value

    for where, e in r.entries(doc, "customers"):
        cid = unique(cat.customers, r.text(e, "id", where), where, "customer")
        tz = r.text(e, "timezone", where, required=False) or "UTC"
        try:
            ZoneInfo(tz)
        except (ZoneInfoNotFoundError, ValueError):
            raise r.fail(where, f"'timezone: {tz}' is not an IANA time zone (e.g. UTC, Europe/Budapest)") from None
        cat.customers[cid] = customer = Customer(
            cid, r.text(e, "name", where, required=False) or cid, r.currency(e, "currency", where), tz,
            r.text(e, "bill_to", where, required=False), rate_class_ref(e, where),
            r.day(e, "active_from", where), r.day(e, "active_to", where),
            r.text(e, "csm", where, required=False), require_csm_approval(e, where),
        )
        if customer.active_from and customer.active_to and customer.active_to <= customer.active_from:
            raise r.fail(where, "'active_to' must be after 'active_from' (a customer's life is [from, to))")
    for where, e in r.entries(doc, "customers"):
        customer = cat.customers[str(e["id"]).strip()]
        if customer.bill_to is not None and customer.bill_to not in cat.customers:
            raise r.fail(where, f"'bill_to: {customer.bill_to}' is not a known customer")
        try:
            cat.billing_account(customer.customer_id)
        except ValueError:
            raise r.fail(where, f"'bill_to' of {customer.customer_id} loops back to itself") from None

    def customer_ref(e: dict, where: str) -> str:
        cid = r.text(e, "customer", where)
        if cid not in cat.customers:
            raise r.fail(where, f"unknown customer '{cid}' (define it under customers)")
        return cid

    for where, e in r.entries(doc, "contracts"):
        ctid = unique(cat.contracts, r.text(e, "id", where), where, "contract")
        cid = customer_ref(e, where)
        contract = Contract(
            ctid, cid, r.currency(e, "currency", where, required=False) or cat.customers[cid].currency,
            rate_class_ref(e, where), r.day(e, "effective_from", where, required=True), r.day(e, "effective_to", where),
            r.decimal(e, "minimum_commitment", where, FEE, required=False),
        )
        if contract.effective_to and contract.effective_to <= contract.effective_from:
            raise r.fail(where, "'effective_to' must be after 'effective_from' (ranges are [from, to))")
        if contract.rate_class_id and cat.rate_classes[contract.rate_class_id].currency != contract.currency:
            raise r.fail(where, f"rate class '{contract.rate_class_id}' is priced in "
                         f"{cat.rate_classes[contract.rate_class_id].currency}, the contract in {contract.currency}")
        cat.contracts[ctid] = contract
        for j, (pw, pe) in enumerate(r.entries(e, "rates", "contracts.rates", where)):
            pid = product_ref(pe, pw)
            add_rate(Rate(pe.get("id") or f"contract:{ctid}:{pid}:{j + 1}", "contract_rate", pid, contract.currency,
                          r.price(pe, pw), r.day(pe, "effective_from", pw) or contract.effective_from,
                          r.day(pe, "effective_to", pw) or contract.effective_to, contract_id=ctid), pw)

    for j, (where, e) in enumerate(r.entries(doc, "account_products")):
        cid, pid = customer_ref(e, where), product_ref(e, where)
        apid = unique(cat.account_products, str(e.get("id") or f"account:{cid}:{pid}:{j + 1}"), where,
                      "account product")
        start = r.day(e, "effective_from", where, required=True)
        end = r.day(e, "effective_to", where)
        rate_id = None
        if "model" not in e and (given := [k for k in e if k in PRICE_KEYS or k == "currency"]):
            raise r.fail(where, f"'{given[0]}' is a field of a price: add 'model' to make this provisioning an "
                                "account override, or remove it")
        if "model" in e:  # an override price for this account
            rate_id = apid
            add_rate(Rate(rate_id, "account_override", pid,
                          r.currency(e, "currency", where, required=False) or cat.customers[cid].currency,
                          r.price(e, where), start, end, customer_id=cid), where)
        cat.account_products[apid] = AccountProduct(apid, cid, pid, start, end, rate_id)

    _refuse_overlaps(cat, r)
    return cat


def _refuse_overlaps(cat: Catalog, r: _Reader) -> None:
    """Two prices for the same product at the same level and owner may not be effective at once."""

    def overlap(a_from, a_to, b_from, b_to) -> bool:
        lo = max(a_from or date.min, b_from or date.min)
        hi = min(a_to or date.max, b_to or date.max)
        return lo < hi

    groups: dict[tuple, list[Rate]] = {}
    for rate in cat.rates.values():
        owner = rate.customer_id or rate.contract_id or rate.rate_class_id or "-"
        groups.setdefault((rate.level, owner, rate.product_id, rate.currency), []).append(rate)
    for (level, owner, product, currency), rates in groups.items():
        for i, a in enumerate(rates):
            for b in rates[i + 1:]:
                if overlap(a.effective_from, a.effective_to, b.effective_from, b.effective_to):
                    raise r.fail(
                        f"{level} {owner} {product} {currency}",
                        f"prices '{a.rate_id}' and '{b.rate_id}' are both effective between "
                        f"{max(a.effective_from or date.min, b.effective_from or date.min)} and "
                        f"{min(a.effective_to or date.max, b.effective_to or date.max)}; make their ranges meet, not overlap",
                    )
    contracts_by_customer: dict[str, list[Contract]] = {}
    for contract in cat.contracts.values():
        contracts_by_customer.setdefault(contract.customer_id, []).append(contract)
    for customer, contracts in contracts_by_customer.items():
        for i, a in enumerate(contracts):
            for b in contracts[i + 1:]:
                if overlap(a.effective_from, a.effective_to, b.effective_from, b.effective_to):
                    raise r.fail(f"contracts {a.contract_id}, {b.contract_id}",
                                 f"customer {customer} has two contracts in force at once")
    provisions: dict[tuple, list[AccountProduct]] = {}
    for ap in cat.account_products.values():
        provisions.setdefault((ap.customer_id, ap.product_id), []).append(ap)
    for (customer, product), aps in provisions.items():
        for i, a in enumerate(aps):
            for b in aps[i + 1:]:
                if overlap(a.effective_from, a.effective_to, b.effective_from, b.effective_to):
                    raise r.fail(f"account_products {a.account_product_id}, {b.account_product_id}",
                                 f"{product} is provisioned twice for {customer} over the same days")


