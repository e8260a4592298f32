"""The catalog as typed objects: customers, products, contracts and the prices they carry.

Every price, wherever it sits in the rate hierarchy, has one shape (`Price`). Tiers are written by
their inclusive upper bound ("up to N units"), the last one unbounded (`up_to=None`).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date
from decimal import Decimal

# The models, aggregations and levels of the hierarchy a catalog may name: core/enums.py.


@dataclass(frozen=True)
class Tier:
    up_to: Decimal | None  # inclusive upper bound; None = unbounded
    unit_price: Decimal
    flat_fee: Decimal = Decimal(0)


@dataclass(frozen=True)
class Price:
    model: str
    tiers: tuple[Tier, ...] = ()  # per_unit is stored as one unbounded tier
    package_size: int | None = None
    package_price: Decimal | None = None
    flat_amount: Decimal | None = None
    included_units: Decimal = Decimal(0)


@dataclass(frozen=True)
class Rate:
    """A price placed at one level of the hierarchy, for one product, currency and date range."""

    rate_id: str
    level: str
    product_id: str
    currency: str
    price: Price
    effective_from: date | None = None  # None = since always
    effective_to: date | None = None  # exclusive; None = open
    customer_id: str | None = None  # account_override
    contract_id: str | None = None  # contract_rate
    rate_class_id: str | None = None  # rate_class

    def effective_on(self, day: date) -> bool:
        return (self.effective_from is None or self.effective_from <= day) and (
            self.effective_to is None or day < self.effective_to
        )


@dataclass(frozen=True)
class Product:
    product_id: str
    name: str
    unit: str
    aggregation: str


@dataclass(frozen=True)
class Customer:
    customer_id: str
    name: str
    currency: str
    timezone: str = "UTC"
    bill_to: str | None = None
    rate_class_id: str | None = None
    active_from: date | None = None  # the customer's life: [active_from, active_to), open when None
    active_to: date | None = None
    csm: str | None = None                # person id (people file) of the customer success manager
    require_csm_approval: bool = False    # invoices need the CSM's approval too


@dataclass(frozen=True)
class RateClass:
    rate_class_id: str
    name: str
    currency: str


@dataclass(frozen=True)
class Contract:
    contract_id: str
    customer_id: str
    currency: str
    rate_class_id: str | None
    effective_from: date
    effective_to: date | None
    minimum_commitment: Decimal | None


@dataclass(frozen=True)
class AccountProduct:
    """A product provisioned for an account; `rate_id` names its price override, if any."""

    account_product_id: str
    customer_id: str
    product_id: str
    effective_from: date
    effective_to: date | None
    rate_id: str | None


@dataclass
class Catalog:
    customers: dict[str, Customer] = field(default_factory=dict)
    products: dict[str, Product] = field(default_factory=dict)
    rate_classes: dict[str, RateClass] = field(default_factory=dict)
    contracts: dict[str, Contract] = field(default_factory=dict)
    account_products: dict[str, AccountProduct] = field(default_factory=dict)
    rates: dict[str, Rate] = field(default_factory=dict)

    def billing_account(self, customer_id: str) -> str:
        """Follow `bill_to` up to the account that receives the invoice."""
        seen = []
        current = customer_id
        while (parent := self.customers[current].bill_to) is not None:
            seen.append(current)
            current = parent
            if current in seen:  # the loader refuses cycles; this guards direct construction
                raise ValueError(f"bill_to cycle through {seen}")
        return current
