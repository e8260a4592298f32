"""The closed lists of values the catalog, the rating and the marts agree on, written once.

dbt's `accepted_values` tests name the same lists; tests/test_core.py holds every one of them
equal to these (a new value is added here and in the YAML, or the test fails).
"""

from __future__ import annotations

# How a product's usage is aggregated over a period (a product's meter); none: a recurring product.
AGGREGATIONS = ("sum", "count", "max", "last", "none")
DEFAULT_AGGREGATION = "sum"

# How a price turns a quantity into an amount (docs/catalog.md).
PRICING_MODELS = ("per_unit", "graduated", "volume", "package", "flat_fee")
# What an invoice line's pricing_model says: a catalog price's model, a contract's minimum-commitment
# true-up, or, for the lines the ledger adds, their line type (manual, adjustment, credit_*).
LINE_PRICING_MODELS = (*PRICING_MODELS, "minimum_commitment", "manual", "adjustment", "credit_applied", "credit_carried")

# Levels of the rate hierarchy, most specific first; the rank (position + 1) decides which price wins.
RATE_LEVELS = ("account_override", "contract_rate", "rate_class", "product_default")
# What an invoice line's rate_level may say: a level of the hierarchy, or where a line not priced
# from the catalog comes from (a contract's true-up, a person's charge, a correction, credit).
LINE_RATE_LEVELS = (*RATE_LEVELS, "contract", "manual", "correction", "credit")

LINE_TYPES = ("usage", "recurring", "minimum_commitment", "manual", "adjustment", "credit_applied", "credit_carried")
UNRATED_REASONS = ("unknown_customer", "unknown_product", "outside_customer_life", "no_price")
INVOICE_STATUSES = ("draft", "issued", "void")
