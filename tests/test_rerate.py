"""The independent re-rater on the reference month (every number of reference-month.md) and on edge cases."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from pathlib import Path

import polars as pl
import pytest

from catalog.load import load_catalog
from catalog.model import AccountProduct, Catalog, Contract, Customer, Price, Product, Rate, Tier
from core.periods import month_window
from quality.rerate import EVENT_SCHEMA, rerate

REFERENCE_CATALOG = Path(__file__).resolve().parents[1] / "examples" / "reference-month" / "catalog.yaml"
OCTOBER = month_window("2026-10")
D = Decimal


def at(day: int, hour: int = 12, minute: int = 0, month: int = 10, year: int = 2026) -> datetime:
    return datetime(year, month, day, hour, minute, tzinfo=UTC)


def frame(rows: list[tuple]) -> pl.DataFrame:
    """(customer, product, quantity, occurred_at[, source, event_id]) rows as a normalized events frame."""
    out = []
    for n, row in enumerate(rows):
        customer, product, quantity, occurred = row[:4]
        source = row[4] if len(row) > 4 else "sftp"
        event_id = row[5] if len(row) > 5 else f"ev-{n:05d}"
        out.append((source, event_id, customer, product, D(quantity), occurred))
    return pl.DataFrame(out, schema=EVENT_SCHEMA, orient="row")


def reference_events() -> pl.DataFrame:
    """October 2026 as received, already deduplicated (the duplicate 7-call event counted once)."""
    rows = [
        # C1 API_CALLS: 1,234,567 over several events, including the (once-counted) 7-call one
        ("C1", "API_CALLS", "400000", at(2)), ("C1", "API_CALLS", "500000", at(9)),
        ("C1", "API_CALLS", "334560", at(20)), ("C1", "API_CALLS", "7", at(25)),
        # C1 STORAGE_GB readings, highest 250 (not the last one: max, not last)
        ("C1", "STORAGE_GB", "120", at(1)), ("C1", "STORAGE_GB", "250", at(15)), ("C1", "STORAGE_GB", "180", at(31)),
        ("C1", "SMS", "1000", at(4)), ("C1", "SMS", "50", at(22)),
        ("C6", "API_CALLS", "10000", at(11)),  # child of C1: billed to C1
        ("C2", "API_CALLS", "1500000", at(5)),
        ("C2", "BANDWIDTH_GB", "1000", at(6)),
        ("C4", "API_CALLS", "100000", at(8)),
        ("C4", "SMS", "500", at(8)),
        ("C999", "API_CALLS", "5000", at(3)),
    ]
    # C3: 600,000 over Oct 1-15 (40,000 a day), 400,000 over Oct 16-31 (25,000 a day)
    rows += [("C3", "API_CALLS", "40000", at(day)) for day in range(1, 16)]
    rows += [("C3", "API_CALLS", "25000", at(day)) for day in range(16, 32)]
    # Just outside the month in UTC: must not count
    rows += [("C1", "API_CALLS", "999", at(30, 23, 59, month=9)), ("C1", "API_CALLS", "999", at(1, 0, 0, month=11))]
    return frame(rows)


@pytest.fixture(scope="module")
def reference():
    return rerate(load_catalog(REFERENCE_CATALOG), reference_events(), OCTOBER)


# account, product, segment start, segment end, quantity, billable, amount, rate level, rate id, line type
REFERENCE_LINES = [
    ("C1", "API_CALLS", date(2026, 10, 2), date(2026, 10, 26), "1244567", "1244567", "2489.13",
     "product_default", "default:API_CALLS:USD:1", "usage"),
    ("C1", "SMS", date(2026, 10, 4), date(2026, 10, 23), "1050", "1050", "16.50",
     "product_default", "default:SMS:USD:1", "usage"),
    ("C1", "STORAGE_GB", date(2026, 10, 1), date(2026, 11, 1), "250", "250", "22.00",
     "product_default", "default:STORAGE_GB:USD:1", "usage"),
    ("C2", "API_CALLS", date(2026, 10, 5), date(2026, 10, 6), "1500000", "500000", "750.00",
     "contract_rate", "contract:CT-2:API_CALLS:1", "usage"),
    ("C2", "BANDWIDTH_GB", date(2026, 10, 6), date(2026, 10, 7), "1000", "1000", "80.00",
     "rate_class", "rate_class:ENTERPRISE:BANDWIDTH_GB:2", "usage"),
    ("C2", None, date(2026, 10, 1), date(2026, 11, 1), None, None, "170.00",
     "contract", "CT-2", "minimum_commitment"),
    ("C3", "API_CALLS", date(2026, 10, 1), date(2026, 10, 16), "600000", "600000", "1200.00",
     "product_default", "default:API_CALLS:USD:1", "usage"),
    ("C3", "API_CALLS", date(2026, 10, 16), date(2026, 11, 1), "400000", "400000", "400.00",
     "account_override", "AP-C3-API", "usage"),
    ("C3", "SUPPORT", date(2026, 10, 11), date(2026, 11, 1), "0", "0", "338.71",
     "product_default", "default:SUPPORT:USD:1", "recurring"),
    ("C4", "API_CALLS", date(2026, 10, 8), date(2026, 10, 9), "100000", "100000", "180.00",
     "rate_class", "rate_class:EU:API_CALLS:1", "usage"),
    ("C5", None, date(2026, 10, 1), date(2026, 11, 1), None, None, "200.00",
     "contract", "CT-5", "minimum_commitment"),
]


def test_reference_month_every_line(reference):
    got = reference.lines.select(
        "billing_account_id", "product_id", "segment_start", "segment_end", "quantity", "billable_quantity",
        "amount", "rate_level", "rate_id", "line_type",
    ).sort("billing_account_id", "product_id", "segment_start", nulls_last=True).rows()
    want = [
        (a, p, s, e, None if q is None else D(q), None if b is None else D(b), D(amt), lvl, rid, lt)
        for a, p, s, e, q, b, amt, lvl, rid, lt in sorted(REFERENCE_LINES, key=lambda r: (r[0], r[1] or "~", r[2]))
    ]
    assert got == want
    assert set(reference.lines["period"]) == {"2026-10"}
    currency = dict(zip(reference.lines["billing_account_id"], reference.lines["currency"], strict=True))
    assert currency == {"C1": "USD", "C2": "USD", "C3": "USD", "C4": "EUR", "C5": "USD"}


def test_reference_month_invoices(reference):
    got = {row[0]: row[1:] for row in reference.invoices.select(
        "billing_account_id", "currency", "period", "total", "line_count", "is_finalizable").rows()}
    assert got == {
        "C1": ("USD", "2026-10", D("2527.63"), 3, True),
        "C2": ("USD", "2026-10", D("1000.00"), 3, True),
        "C3": ("USD", "2026-10", D("1938.71"), 3, True),
        "C4": ("EUR", "2026-10", D("180.00"), 1, False),  # SMS unrated: cannot be finalized
        "C5": ("USD", "2026-10", D("200.00"), 1, True),
    }
    assert "C999" not in got and "C6" not in got  # C999 unknown, C6 billed to C1


def test_reference_month_unrated(reference):
    got = reference.unrated.select("customer_id", "billing_account_id", "product_id", "quantity", "reason").rows()
    assert sorted(got, key=lambda r: r[0]) == [
        ("C4", "C4", "SMS", D(500), "no_price"),
        ("C999", None, "API_CALLS", D(5000), "unknown_customer"),
    ]
    details = dict(zip(reference.unrated["customer_id"], reference.unrated["detail"], strict=True))
    assert "EUR" in details["C4"] and "500 SMS" in details["C4"]
    assert "C999" in details["C999"] and "not in the catalog" in details["C999"]


def test_reference_month_tier_breakdown(reference):
    tiers = reference.tiers
    storage = tiers.filter(pl.col("product_id") == "STORAGE_GB").select("tier_number", "units", "unit_price", "amount")
    assert storage.rows() == [(1, D(100), D("0.10"), D("10.00")), (2, D(150), D("0.08"), D("12.00"))]
    sms = tiers.filter(pl.col("product_id") == "SMS").select("units", "unit_price", "amount").rows()
    assert sms == [(D(11), D("1.50"), D("16.50"))]  # 11 packages
    support = reference.lines.filter(pl.col("product_id") == "SUPPORT")
    assert support["amount_unrounded"].item() == D("338.709677419354")  # 500 x 21 / 31, truncated to 12 places
    # every line's tiers add up to its unrounded amount
    sums = tiers.group_by("billing_account_id", "product_id", "segment_start").agg(pl.col("amount").sum())
    joined = reference.lines.join(sums, on=["billing_account_id", "product_id", "segment_start"], how="inner")
    assert joined.height == reference.lines.filter(pl.col("line_type") != "minimum_commitment").height
    assert (joined["amount_unrounded"] == joined["amount_right"]).all()


def test_money_columns_are_decimal(reference):
    for df in (reference.lines, reference.tiers, reference.invoices, reference.unrated):
        assert not any(dtype.is_float() for dtype in df.schema.values())


def test_float_quantities_are_refused():
    events = reference_events().with_columns(pl.col("quantity").cast(pl.Float64))
    with pytest.raises(TypeError, match="Decimal"):
        rerate(load_catalog(REFERENCE_CATALOG), events, OCTOBER)


def test_no_usage_still_gives_commitment_invoices():
    result = rerate(load_catalog(REFERENCE_CATALOG), frame([]), OCTOBER)
    assert result.invoices.select("billing_account_id", "total").rows() == [
        ("C2", D("1000.00")), ("C3", D("338.71")), ("C5", D("200.00"))]
    assert result.unrated.height == 0


# --- small catalogs for the edge cases ---------------------------------------------------------


def small_catalog(*prices: tuple[str, str, Price], tz: str = "UTC") -> Catalog:
    """Customer A (USD, in `tz`) and one product per (code, aggregation, default USD price)."""
    cat = Catalog()
    cat.customers["A"] = Customer("A", "A", "USD", tz)
    for code, aggregation, price in prices:
        cat.products[code] = Product(code, code, "unit", aggregation)
        cat.rates[f"d:{code}"] = Rate(f"d:{code}", "product_default", code, "USD", price)
    return cat


def per_unit(price: str, included: str = "0") -> Price:
    return Price("per_unit", tiers=(Tier(None, D(price)),), included_units=D(included))


def line(result, product: str = "P"):
    rows = result.lines.filter(pl.col("product_id") == product)
    assert rows.height == 1, rows
    return rows.row(0, named=True)


def test_local_day_in_customer_time_zone_decides_the_month():
    cat = small_catalog(("P", "sum", per_unit("1")), tz="Europe/Budapest")
    cat.customers["U"] = Customer("U", "U", "USD", "UTC")
    events = frame([("A", "P", "3", datetime(2024, 12, 31, 23, 30, tzinfo=UTC)),
                    ("U", "P", "5", datetime(2024, 12, 31, 23, 30, tzinfo=UTC))])
    january = rerate(cat, events, month_window("2025-01"))
    december = rerate(cat, events, month_window("2024-12"))
    assert january.lines.select("billing_account_id", "quantity", "segment_start").rows() == [
        ("A", D(3), date(2025, 1, 1))]  # 00:30 in Budapest
    assert december.lines.select("billing_account_id", "quantity", "segment_start").rows() == [
        ("U", D(5), date(2024, 12, 31))]
    # an unknown customer is read in UTC
    unknown = rerate(cat, frame([("Z", "P", "1", datetime(2024, 12, 31, 23, 30, tzinfo=UTC))]),
                     month_window("2024-12"))
    assert unknown.unrated["reason"].to_list() == ["unknown_customer"]


def test_last_aggregation_takes_latest_reading_with_tie_breaks():
    cat = small_catalog(("P", "last", per_unit("1")))
    events = frame([
        ("A", "P", "70", at(28)),
        ("A", "P", "10", at(5)),
        ("A", "P", "40", at(20), "api", "z"),
        ("A", "P", "50", at(20), "sftp", "a"),  # same instant: greatest source wins
        ("A", "P", "60", at(20), "sftp", "b"),  # ...then greatest event id
    ])
    assert line(rerate(cat, events, OCTOBER))["quantity"] == D(70)
    assert line(rerate(cat, events.filter(pl.col("quantity") != D(70)), OCTOBER))["quantity"] == D(60)


def test_count_and_max_aggregations():
    cat = small_catalog(("C", "count", per_unit("1")), ("M", "max", per_unit("1")))
    events = frame([("A", "C", "100", at(d)) for d in (1, 2, 2, 30)] + [("A", "M", q, at(d)) for d, q in
                                                                          ((1, "3"), (9, "7.5"), (30, "2"))])
    result = rerate(cat, events, OCTOBER)
    assert line(result, "C")["quantity"] == D(4)
    assert line(result, "M")["quantity"] == D("7.5")


def test_provisioned_first_tier_flat_fee_at_zero_usage():
    tiers = (Tier(D(100), D("0.10"), D("5.00")), Tier(None, D("0.05"), D("20.00")))
    cat = small_catalog(("G", "sum", Price("graduated", tiers=tiers)), ("V", "sum", Price("volume", tiers=tiers)),
                        ("N", "sum", Price("graduated", tiers=tiers)))
    for code in ("G", "V"):
        cat.account_products[f"ap-{code}"] = AccountProduct(f"ap-{code}", "A", code, date(2026, 1, 1), None, None)
    result = rerate(cat, frame([]), OCTOBER)
    for code in ("G", "V"):
        got = line(result, code)
        assert (got["quantity"], got["amount"], got["segment_start"], got["segment_end"]) == (
            D(0), D("5.00"), date(2026, 10, 1), date(2026, 11, 1))
    assert result.lines.filter(pl.col("product_id") == "N").height == 0  # not provisioned, not used: nothing
    # once used, only reached tiers' fees count
    used = rerate(cat, frame([("A", "N", "150", at(3))]), OCTOBER)
    assert line(used, "N")["amount"] == D("10.00") + D("5.00") + D("2.50") + D("20.00")


def test_included_units_larger_than_usage_bill_zero():
    cat = small_catalog(("P", "sum", per_unit("0.50", included="1000")))
    got = line(rerate(cat, frame([("A", "P", "400", at(3)), ("A", "P", "350", at(4))]), OCTOBER))
    assert (got["quantity"], got["billable_quantity"], got["amount"]) == (D(750), D(0), D(0))


def test_package_rounds_up_and_counts_from_first_billable_unit():
    cat = small_catalog(("P", "sum", Price("package", package_size=100, package_price=D("1.50"),
                                           included_units=D(50))))
    for used, amount in (("50", "0"), ("51", "1.50"), ("150", "1.50"), ("150.001", "3.00"), ("250", "3.00")):
        assert line(rerate(cat, frame([("A", "P", used, at(3))]), OCTOBER))["amount"] == D(amount), used


@pytest.mark.parametrize(("quantity", "tier", "amount"), [
    ("100", 1, "10.00"), ("100.5", 2, "8.04"), ("1000", 2, "80.00"), ("1000.5", 3, "60.03"), ("0.5", 1, "0.05")])
def test_volume_tier_boundaries(quantity, tier, amount):
    tiers = (Tier(D(100), D("0.10")), Tier(D(1000), D("0.08")), Tier(None, D("0.06")))
    cat = small_catalog(("P", "sum", Price("volume", tiers=tiers)))
    result = rerate(cat, frame([("A", "P", quantity, at(3))]), OCTOBER)
    assert line(result)["amount"] == D(amount)
    assert result.tiers.select("tier_number", "units").rows() == [(tier, D(quantity))]


def test_unknown_product_and_price_change_mid_month():
    cat = small_catalog(("P", "sum", per_unit("1")))
    cat.rates["d:P"] = Rate("d:P", "product_default", "P", "USD", per_unit("1"), effective_to=date(2026, 10, 10))
    cat.rates["d:P2"] = Rate("d:P2", "product_default", "P", "USD", per_unit("2"), effective_from=date(2026, 10, 20))
    events = frame([("A", "P", "1", at(day)) for day in (1, 9, 10, 19, 20, 31)] + [("A", "X", "7", at(2))])
    result = rerate(cat, events, OCTOBER)
    assert result.lines.select("rate_id", "segment_start", "segment_end", "quantity", "amount").rows() == [
        ("d:P", date(2026, 10, 1), date(2026, 10, 10), D(2), D(2)),
        ("d:P2", date(2026, 10, 20), date(2026, 11, 1), D(2), D(4)),
    ]
    assert sorted(result.unrated.select("product_id", "quantity", "reason").rows()) == [
        ("P", D(2), "no_price"), ("X", D(7), "unknown_product")]
    assert result.invoices["is_finalizable"].to_list() == [False]


def test_contract_currency_and_two_currencies_make_two_invoices():
    cat = small_catalog(("P", "sum", per_unit("1")))
    cat.rates["eur:P"] = Rate("eur:P", "product_default", "P", "EUR", per_unit("0.9"))
    cat.contracts["K"] = Contract("K", "A", "EUR", None, date(2026, 10, 16), None, D(100))
    events = frame([("A", "P", "10", at(3)), ("A", "P", "10", at(20))])
    result = rerate(cat, events, OCTOBER)
    assert result.invoices.select("currency", "total").rows() == [("EUR", D(100)), ("USD", D(10))]
    trueup = result.lines.filter(pl.col("line_type") == "minimum_commitment").row(0, named=True)
    assert (trueup["currency"], trueup["amount"], trueup["rate_id"]) == ("EUR", D(91), "K")
    eur = result.lines.filter(pl.col("currency") == "EUR", pl.col("product_id") == "P").row(0, named=True)
    assert (eur["rate_id"], eur["rate_level"], eur["segment_start"]) == ("eur:P", "product_default", date(2026, 10, 20))


def test_flat_fee_proration_ends_mid_month():
    cat = small_catalog(("S", "none", Price("flat_fee", flat_amount=D("100"))))
    cat.account_products["ap"] = AccountProduct("ap", "A", "S", date(2026, 9, 1), date(2026, 10, 11), None)
    got = line(rerate(cat, frame([]), OCTOBER), "S")
    assert (got["line_type"], got["segment_end"], got["amount_unrounded"], got["amount"]) == (
        "recurring", date(2026, 10, 11), D("32.258064516129"), D("32.26"))


def test_child_usage_rolls_up_and_hierarchy_is_resolved_on_parent():
    cat = small_catalog(("P", "sum", per_unit("1")))
    cat.customers["K"] = Customer("K", "K", "USD", "Asia/Tokyo", bill_to="A")
    cat.rates["ov"] = Rate("ov", "account_override", "P", "USD", per_unit("0.5"), customer_id="A")
    # 2026-10-31T20:00Z is already November in Tokyo
    events = frame([("K", "P", "10", at(3)), ("A", "P", "10", at(4)), ("K", "P", "99", at(31, 20))])
    got = line(rerate(cat, events, OCTOBER))
    assert (got["billing_account_id"], got["quantity"], got["amount"], got["rate_level"]) == (
        "A", D(20), D(10), "account_override")


def test_segment_dates_use_last_day_plus_one():
    cat = small_catalog(("P", "sum", per_unit("1")))
    got = line(rerate(cat, frame([("A", "P", "1", at(31, 23, 59))]), OCTOBER))
    assert (got["segment_start"], got["segment_end"]) == (date(2026, 10, 31), date(2026, 10, 31) + timedelta(days=1))


def test_events_that_would_lose_digits_or_rows_are_refused():
    cat = small_catalog(("P", "sum", per_unit("1")))
    precise = frame([("A", "P", "1", at(3))]).with_columns(
        pl.Series("quantity", [D("1.0000000001")], dtype=pl.Decimal(38, 10)))
    with pytest.raises(ValueError, match="decimal places"):
        rerate(cat, precise, OCTOBER)
    with pytest.raises(ValueError, match="nulls"):
        rerate(cat, frame([("A", "P", "1", at(3))]).with_columns(pl.lit(None, pl.String).alias("product_id")), OCTOBER)


@pytest.mark.parametrize("batch_events", [1, 7, 1_000_000])
def test_reading_the_warehouse_in_customer_batches_gives_the_same_month(tmp_path, batch_events):
    from quality.rerate import rerate_warehouse
    from warehouse.store import Warehouse

    events = reference_events()
    warehouse = Warehouse(duckdb_path=tmp_path / "w.duckdb")
    warehouse.ensure_schema()
    with warehouse.transaction() as tx:
        tx.insert_frame("raw.events", events.with_row_index("row_number", offset=1).with_columns(
            pl.col("row_number").cast(pl.Int64)), constants={"file_id": "f", "loaded_at": at(1)})
        got = rerate_warehouse(tx, load_catalog(REFERENCE_CATALOG), OCTOBER, batch_events=batch_events)
    want = rerate(load_catalog(REFERENCE_CATALOG), events, OCTOBER)
    assert got.lines.equals(want.lines) and got.tiers.equals(want.tiers)
    assert got.unrated.equals(want.unrated) and got.invoices.equals(want.invoices)


def test_amounts_at_the_catalogs_limits_are_exact():
    from core.money import FEE, PRICE, QUANTITY

    largest = QUANTITY.largest  # 9,999,999,999.999999999
    cat = small_catalog(("WIDE", "sum", per_unit(f"{PRICE.largest}")),
                        ("BLOCKS", "sum", Price("package", package_size=1, package_price=PRICE.largest)),
                        ("FEE", "none", Price("flat_fee", flat_amount=FEE.largest)))
    cat.account_products["AP"] = AccountProduct("AP", "A", "FEE", date(2026, 10, 11), None, None)
    got = rerate(cat, frame([("A", "WIDE", f"{largest}", at(5)), ("A", "BLOCKS", f"{largest}", at(5))]), OCTOBER)
    amounts = {row["product_id"]: (row["amount_unrounded"], row["amount"]) for row in got.lines.iter_rows(named=True)}
    assert amounts == {
        # (10^10 - 10^-9) x (10^6 - 10^-12): all 37 digits kept
        "WIDE": (D("9999999999999999.989000000000000000001"), D("9999999999999999.99")),
        # ceil(largest) = 10^10 whole packages, one digit more than a quantity
        "BLOCKS": (D("9999999999999999.99"), D("9999999999999999.99")),
        # 21 of 31 days of the largest fee, truncated to 12 places
        "FEE": (D("677419354838709.677419354838"), D("677419354838709.68")),
    }
    assert got.tiers.filter(pl.col("product_id") == "BLOCKS")["units"].to_list() == [D(10) ** 10]


def test_an_amount_the_warehouse_cannot_keep_is_a_finding_naming_the_line(tmp_path):
    from core.money import FEE, PRICE, QUANTITY
    from quality.checks import misrated_lines
    from quality.rerate import AmountDoesNotFit
    from warehouse.store import Warehouse

    # the largest usage at the largest price plus two of the largest tier fees: above 10^16
    tiers = (Tier(D(1), PRICE.largest, FEE.largest), Tier(None, PRICE.largest, FEE.largest))
    cat = small_catalog(("P", "sum", Price("graduated", tiers=tiers)))
    events = frame([("A", "P", f"{QUANTITY.largest}", at(5))])
    with pytest.raises(AmountDoesNotFit, match=r"of A P \(rate d:P\) is too large \(the limit: at most 16 digits"):
        rerate(cat, events, OCTOBER)
    warehouse = Warehouse(duckdb_path=tmp_path / "w.duckdb")
    warehouse.ensure_schema()
    with warehouse.transaction() as tx:
        tx.insert_frame("raw.events", events.with_row_index("row_number", offset=1).with_columns(
            pl.col("row_number").cast(pl.Int64)), constants={"file_id": "f", "loaded_at": at(1)})
        outcome = misrated_lines(tx, OCTOBER, cat)
    assert (outcome.passed, outcome.blocking) == (False, True)
    assert [(f["billing_account_id"], f["product_id"], f["rate_id"]) for f in outcome.findings] == [("A", "P", "d:P")]
    assert "no invoice can hold it exactly" in outcome.findings[0]["detail"]
