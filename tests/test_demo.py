"""The demo dataset generator: catalog loads, usage files are well-formed and deterministic, defects planted."""

from __future__ import annotations

import hashlib
import re
from pathlib import Path

import polars as pl
import pytest

from catalog.load import load_catalog
from demo.dataset import COLUMNS, UNKNOWN_CUSTOMER, generate_demo, main

EVENTS = 6_000
DEFECT_KINDS = {"malformed_quantity", "negative_quantity", "duplicate_event", "unknown_customer", "no_price",
                "naive_timestamp", "duplicate_file"}


def read(path: Path) -> pl.DataFrame:
    """A usage file as text columns plus a 1-based row_number (the header of a CSV is not a row)."""
    if path.suffix == ".csv":
        frame = pl.read_csv(path, infer_schema=False)
    else:
        frame = pl.read_ndjson(path, schema={c: pl.String for c in COLUMNS})
    return frame.with_row_index("row_number", offset=1).with_columns(pl.col("row_number").cast(pl.Int64))


def read_all(summary) -> pl.DataFrame:
    return pl.concat([read(p).with_columns(file=pl.lit(p.name)) for p in summary.files])


def digests(folder: Path) -> dict[str, str]:
    return {str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(folder.rglob("*")) if p.is_file()}


@pytest.fixture(scope="module")
def demo(tmp_path_factory):
    out = tmp_path_factory.mktemp("demo")
    return generate_demo(out, events=EVENTS), out


@pytest.fixture(scope="module")
def clean(tmp_path_factory):
    out = tmp_path_factory.mktemp("clean")
    return generate_demo(out, events=EVENTS, defects=False), out


def test_catalog_loads_with_realistic_content(demo):
    summary, out = demo
    assert summary.catalog == out / "catalog.yaml"
    cat = load_catalog(summary.catalog)
    assert len(cat.customers) == summary.customers == 240
    customers = list(cat.customers.values())
    currencies = [c.currency for c in customers]
    assert currencies.count("USD") > currencies.count("EUR") > 0
    assert any(c.timezone != "UTC" for c in customers)
    children = [c for c in customers if c.bill_to]
    assert 3 <= len(children) <= 20
    assert all(cat.customers[c.bill_to].currency == c.currency for c in children)
    assert all(re.fullmatch(r"[A-Z][A-Za-z ]+ \d{3}( [A-Za-z]+)?", c.name) for c in customers)
    assert len({c.name for c in customers}) == len(customers)

    assert {p.product_id: p.aggregation for p in cat.products.values()} == {
        "API_CALLS": "sum", "STORAGE_GB": "max", "SMS": "sum", "BANDWIDTH_GB": "sum",
        "ACTIVE_USERS": "max", "SUPPORT": "none"}
    defaults = [r for r in cat.rates.values() if r.level == "product_default"]
    models = {(r.product_id, r.price.model) for r in defaults}
    assert {("API_CALLS", "per_unit"), ("STORAGE_GB", "graduated"), ("SMS", "package"),
            ("BANDWIDTH_GB", "volume"), ("ACTIVE_USERS", "per_unit"), ("SUPPORT", "flat_fee")} <= models
    usd = {r.product_id for r in defaults if r.currency == "USD"}
    eur = {r.product_id for r in defaults if r.currency == "EUR"}
    assert usd == set(cat.products)
    assert eur == set(cat.products) - {"SMS"}
    assert not any(r.product_id == "SMS" and r.currency == "EUR" for r in cat.rates.values())
    assert len(cat.rate_classes) == 2

    assert 0.2 * len(customers) <= len(cat.contracts) <= 0.3 * len(customers)
    assert any(c.minimum_commitment for c in cat.contracts.values())
    contract_rates = [r for r in cat.rates.values() if r.level == "contract_rate"]
    assert any(r.price.included_units > 0 for r in contract_rates)
    aps = list(cat.account_products.values())
    assert any(a.product_id == "SUPPORT" and a.rate_id is None for a in aps)
    assert any(a.rate_id for a in aps)


def test_files_in_both_formats_with_the_event_contract(demo):
    summary, out = demo
    assert summary.inbox == out / "inbox"
    names = sorted(p.name for p in summary.inbox.iterdir())
    assert names == [p.name for p in summary.files]
    assert {p.suffix for p in summary.files} == {".csv", ".jsonl"}
    for month in ("2026-08", "2026-09", "2026-10"):
        assert len([n for n in names if n.startswith(f"usage-{month}-part")]) >= 4
    assert summary.inbox.joinpath("usage-2026-10-part1.csv").read_text().startswith(",".join(COLUMNS) + "\n")
    first_json = summary.inbox.joinpath("usage-2026-10-part2.jsonl").read_text().splitlines()[0]
    assert '"quantity":"' in first_json  # quantity is a JSON string, not a number
    for path in summary.files:
        assert read(path).columns == ["row_number", *COLUMNS]


def test_rows_match_events_plus_the_planted_rows(demo):
    summary, _ = demo
    rows = read_all(summary)
    per_file = rows.group_by("file").len()
    assert dict(per_file.iter_rows()) == summary.rows_per_file
    resent = [d.file for d in summary.defects if d.kind == "duplicate_file"]
    assert len(resent) == 1
    assert summary.extra_rows == len([d for d in summary.defects if d.row is not None]) == 8
    assert rows.height == summary.rows_written == EVENTS + summary.extra_rows + summary.rows_per_file[resent[0]]
    generated = rows.filter(pl.col("file") != resent[0])
    planted_ids = {d.event_id for d in summary.defects if d.kind != "duplicate_event" and d.event_id}
    assert generated.filter(~pl.col("event_id").is_in(planted_ids)).height == EVENTS + 1  # + the repeat
    assert generated["event_id"].n_unique() == EVENTS + len(planted_ids)


def test_values_are_well_formed_and_spread(demo):
    summary, _ = demo
    planted = {(d.file, d.row) for d in summary.defects}
    rows = read_all(summary).filter(
        ~pl.struct("file", "row_number").map_elements(lambda s: (s["file"], s["row_number"]) in planted,
                                                      return_dtype=pl.Boolean))
    assert rows["event_id"].str.contains(r"^ev-\d{4}-\d{2}-\d+$").all()
    assert rows["occurred_at"].str.contains(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}Z$").all()
    assert (rows["occurred_at"].str.slice(0, 7) == rows["event_id"].str.slice(3, 7)).all()
    counts = rows.filter(pl.col("product_id").is_in(["API_CALLS", "SMS", "ACTIVE_USERS"]))["quantity"]
    assert counts.str.contains(r"^[1-9]\d*$").all()
    gigabytes = rows.filter(pl.col("product_id").is_in(["STORAGE_GB", "BANDWIDTH_GB"]))["quantity"]
    assert gigabytes.str.contains(r"^\d+(\.\d{1,3})?$").all()
    assert gigabytes.str.contains(r"\.").any()
    assert set(rows["product_id"]) == {"API_CALLS", "STORAGE_GB", "SMS", "BANDWIDTH_GB", "ACTIVE_USERS"}
    per_customer = rows.group_by("customer_id").len()["len"].sort(descending=True)
    assert per_customer[0] > 10 * per_customer[len(per_customer) // 2]  # a few big customers, a long tail
    per_month = rows.group_by(pl.col("occurred_at").str.slice(0, 7)).len()
    assert per_month.height == 3 and per_month["len"].min() > EVENTS / 4


def test_every_customer_is_in_the_catalog_except_the_planted_one(demo, clean):
    for summary, _ in (demo, clean):
        known = set(load_catalog(summary.catalog).customers)
        used = set(read_all(summary)["customer_id"])
        assert used - known == ({UNKNOWN_CUSTOMER} if summary.defects else set())


def test_every_planted_defect_sits_where_the_summary_says(demo):
    summary, _ = demo
    assert {d.kind for d in summary.defects} == DEFECT_KINDS
    files = {p.name: read(p) for p in summary.files}
    for d in summary.defects:
        if d.kind == "duplicate_file":
            original = d.file.replace("_resent", "")
            assert original in d.detail
            assert (summary.inbox / d.file).read_bytes() == (summary.inbox / original).read_bytes()
            assert d.file != original
            continue
        row = files[d.file].row(d.row - 1, named=True)
        assert row["event_id"] == d.event_id
        if d.kind == "malformed_quantity":
            assert d.file.endswith(".csv")
            with pytest.raises(ValueError):
                float(row["quantity"])
        elif d.kind == "negative_quantity":
            assert float(row["quantity"]) < 0
        elif d.kind == "duplicate_event":
            same = files[d.file].filter(pl.col("event_id") == d.event_id)
            assert same.height == 2 and same.drop("row_number").unique().height == 1
            assert d.row == same["row_number"].max()
        elif d.kind == "unknown_customer":
            assert row["customer_id"] == UNKNOWN_CUSTOMER
        elif d.kind == "no_price":
            customer = load_catalog(summary.catalog).customers[row["customer_id"]]
            assert (row["product_id"], customer.currency, customer.bill_to) == ("SMS", "EUR", None)
            assert row["customer_id"] in d.detail
        elif d.kind == "naive_timestamp":
            assert row["occurred_at"][-1].isdigit() and "+" not in row["occurred_at"]
    unknown = [d for d in summary.defects if d.kind == "unknown_customer"]
    all_rows = read_all(summary)
    assert all_rows.filter(pl.col("customer_id") == UNKNOWN_CUSTOMER).height == len(unknown)
    assert all_rows.filter(pl.col("quantity") == "N/A").height == 1
    assert all_rows.filter(pl.col("quantity").str.starts_with("-")).height == 1
    assert all_rows.filter(~pl.col("occurred_at").str.ends_with("Z")).height == 1


def test_no_defects_means_none(clean):
    summary, _ = clean
    assert summary.defects == () and summary.extra_rows == 0
    rows = read_all(summary)
    assert rows.height == summary.rows_written == EVENTS
    assert rows["event_id"].n_unique() == EVENTS
    assert rows["quantity"].str.contains(r"^\d+(\.\d{1,3})?$").all()
    assert rows["occurred_at"].str.ends_with("Z").all()
    hashes = [hashlib.sha256(p.read_bytes()).hexdigest() for p in summary.files]
    assert len(set(hashes)) == len(hashes)


def test_same_arguments_give_identical_bytes(tmp_path, demo):
    summary, out = demo
    again = generate_demo(tmp_path / "again", events=EVENTS)
    assert again.defects == summary.defects and again.rows_per_file == summary.rows_per_file
    assert digests(tmp_path / "again") == digests(out)
    generate_demo(tmp_path / "other", events=EVENTS, seed=8)
    assert digests(tmp_path / "other") != digests(out)


def test_rerun_into_the_same_folder_leaves_only_the_new_files(tmp_path):
    generate_demo(tmp_path, events=EVENTS)
    (tmp_path / "inbox" / "notes.txt").write_text("someone else's file")
    summary = generate_demo(tmp_path, events=500, months=("2026-10",), defects=False)
    left = sorted(p.name for p in (tmp_path / "inbox").iterdir())
    assert left == sorted([p.name for p in summary.files] + ["notes.txt"])
    assert read_all(summary).height == 500


def test_other_sizes_and_refusals(tmp_path):
    summary = generate_demo(tmp_path / "one", customers=30, events=400, months=("2026-10",), seed=1)
    assert len(load_catalog(summary.catalog).customers) == 30
    assert {d.kind for d in summary.defects} == DEFECT_KINDS
    assert read_all(summary).height == summary.rows_written
    with pytest.raises(ValueError, match="too few events"):
        generate_demo(tmp_path / "tiny", events=5)
    assert generate_demo(tmp_path / "empty", events=0, defects=False).rows_written == 0
    with pytest.raises(ValueError, match="YYYY-MM"):
        generate_demo(tmp_path / "bad", months=("2026-1",))


def test_command_line(tmp_path, capsys):
    assert main([str(tmp_path / "cli"), "--customers", "200", "--events", "1000", "--seed", "3",
                 "--no-defects"]) == 0
    printed = capsys.readouterr().out
    assert "200 customers" in printed and "1,000 events" in printed and "planted defects: none" in printed
    assert len(load_catalog(tmp_path / "cli" / "catalog.yaml").customers) == 200


def test_eur_usage_with_no_price_is_only_the_planted_row(demo, clean):
    for summary, _ in (demo, clean):
        cat = load_catalog(summary.catalog)
        eur = {c.customer_id for c in cat.customers.values() if c.currency == "EUR"}
        rows = read_all(summary).filter(pl.col("customer_id").is_in(eur) & (pl.col("product_id") == "SMS"))
        planted = [(d.file, d.row) for d in summary.defects if d.kind == "no_price"]
        assert list(zip(rows["file"], rows["row_number"], strict=True)) == planted
        assert len(planted) == (1 if summary.defects else 0)
        assert not any(r.product_id == "SMS" and r.currency == "EUR" for r in cat.rates.values())


def test_billing_demo_refuses_a_home_it_did_not_make_and_touches_nothing(tmp_path, capsys):
    from billing import cli

    from support import billing_env

    home = tmp_path / "real"
    (home / "landing" / "ab").mkdir(parents=True)
    (home / "landing" / "ab" / "abc.csv").write_text("what a customer sent\n")
    (home / "warehouse.duckdb").write_bytes(b"a real warehouse")
    before = digests(home)
    with billing_env(home):
        assert cli.main(["demo", "--events", "1000"]) == 2
    out = " ".join(capsys.readouterr().out.split())
    assert "demo refused" in out and "was not made by the demo" in out and ".billing-demo" in out
    assert "landing" in out and "warehouse.duckdb" in out  # says what it found
    assert digests(home) == before  # nothing deleted, nothing written
    assert not (home / ".billing-demo").exists()


def test_the_demo_home_is_absent_empty_or_marked(tmp_path):
    from demo.dataset import HOME_MARKER, DemoHomeRefused, prepare_home

    absent = prepare_home(tmp_path / "new" / "home")
    assert sorted(p.name for p in absent.iterdir()) == [HOME_MARKER]
    empty = tmp_path / "empty"
    empty.mkdir()
    assert sorted(p.name for p in prepare_home(empty).iterdir()) == [HOME_MARKER]
    # the demo's own home is cleared for the next demo
    (empty / "warehouse.duckdb").write_bytes(b"last demo")
    (empty / "inbox").mkdir()
    assert sorted(p.name for p in prepare_home(empty).iterdir()) == [HOME_MARKER]
    # a marker removed by hand: the folder is no longer the demo's to clear
    (empty / HOME_MARKER).unlink()
    (empty / "warehouse.duckdb").write_bytes(b"kept")
    with pytest.raises(DemoHomeRefused, match="was not made by the demo"):
        prepare_home(empty)
    assert (empty / "warehouse.duckdb").read_bytes() == b"kept"
    a_file = tmp_path / "file"
    a_file.write_text("x")
    with pytest.raises(DemoHomeRefused, match="is a file"):
        prepare_home(a_file)


def test_the_demo_tells_its_planted_blocking_findings_from_others():
    from billing.cli import planted_or_not
    from quality.checks import CheckOutcome

    planted = frozenset({("unrated_usage", "C-UNKNOWN-1"), ("unrated_usage", "C-0042")})
    unrated = CheckOutcome("unrated_usage", False, True, "", [{"customer_id": "C-UNKNOWN-1"}, {"customer_id": "C-0042"}])
    assert planted_or_not([unrated], planted) == (sorted(planted), [], [])
    rejected = CheckOutcome("rejected_files", False, True, "", [{"file_id": "ab12", "customer_id": None}])
    missed = CheckOutcome("missed_customers", False, True, "", [{"billing_account_id": "C-0007"}])
    assert planted_or_not([unrated, rejected, missed], planted)[1] == [("missed_customers", "C-0007"),
                                                                       ("rejected_files", None)]
    # a planted defect the checks did not find is not a clean demo either
    only_one = CheckOutcome("unrated_usage", False, True, "", [{"customer_id": "C-UNKNOWN-1"}])
    assert planted_or_not([only_one], planted)[2] == [("unrated_usage", "C-0042")]
