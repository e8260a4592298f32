"""A deterministic, realistic demo dataset: a catalog plus months of usage files with planted defects.

`generate_demo(out_dir)` writes `out_dir/catalog.yaml` (the catalog format of `catalog/load.py`) and
usage files into `out_dir/inbox/`, in the event contract (event_id, customer_id, product_id,
quantity, occurred_at), as CSV and JSON lines, several files per month. The same arguments and seed
give byte-identical files. Events are generated per file with numpy and formatted and written with
Polars (no Python loop per event), at most `MAX_ROWS_PER_FILE` rows at a time, so 10 million events
take seconds and bounded memory.

What the usage looks like:
- events are spread over the months (slightly growing month by month) and over customers with a
  Zipf-like skew (a few big customers, a long tail); every customer uses API_CALLS and a subset of
  STORAGE_GB, SMS, BANDWIDTH_GB and ACTIVE_USERS; SUPPORT is provisioned, never metered;
- each month is split into `parts` files, each covering a consecutive slice of the month in time
  order (odd parts CSV, even parts JSON lines); timestamps are uniform in the month, whole seconds,
  ISO 8601 with `Z`; quantities are decimal strings (integers for counts, up to 3 decimals for GB);
- event ids are `ev-<month>-<n>`, n = 1.. in time order within the month, unique across the set.

Planted defects (`defects=True`), each listed in `DemoSummary.defects` with its file and 1-based data
row (the header of a CSV is not a row; the same numbering as `normalize.rules.read_rows`). All of
them are rows added on top of the `events` generated ones (except the re-delivered file):
- `malformed_quantity`: quantity `N/A` (first month, part 1, CSV);
- `negative_quantity`: quantity `-2.5` (first month, part 2, JSON lines);
- `duplicate_event`: a row repeated with the same event id and payload a few rows later
  (second month, part 1, CSV);
- `unknown_customer`: three rows for customer `C-UNKNOWN-1` (last month, part 2, JSON lines);
- `no_price`: one SMS row for the biggest EUR customer: the catalog has no EUR price for SMS (last
  month, part 1, CSV). Otherwise EUR customers send no SMS, so this is the only usage with no price;
- `naive_timestamp`: an occurred_at without a time zone (last month, part 3, CSV);
- `duplicate_file`: part 4 of the second month delivered again, byte for byte, as
  `usage-<month>-part4_resent.jsonl` (its rows are counted in `rows_written`, not in `extra_rows`).
With one month only, "second" and "last" month are that month.

Which of them the quality checks see: `unknown_customer` and `no_price` are the last month's
unrated usage (the `unrated_usage` check, one finding each: C-UNKNOWN-1, and the EUR customer), its
only blocking findings (`DemoSummary.planted_blocking_findings`; `billing demo` exits 0 because of
them, where `billing run` exits 3). The naive timestamp (last month) is a row in `raw.quarantine`
and a warning of the `quarantined_rows` check. The malformed and negative quantities (first month)
are rows in `raw.quarantine`, the repeated row one in `raw.duplicates`, the re-delivered file a
receipt in `raw.file_receipts`: accounted for, not findings of the last month. With
`defects=False` no check finds anything.

The catalog (see `_catalog_yaml`): >= 200 customers by default ("Acme Logistics 017"), mostly USD,
15% EUR, a few in a non-UTC time zone, a handful of child accounts billing to a parent; six products
covering every pricing model and aggregation; USD default prices for every product and EUR for all
but SMS (so EUR SMS usage is unrated); two rate classes; contracts on ~25% of customers (minimum
commitments, contract rates with included units, a few starting or ending inside the months); a few
provisioned products (SUPPORT) and account price overrides.

Command line: `python -m demo.dataset OUT_DIR [--customers N] [--events N] [--seed N] [--no-defects]`.
"""

from __future__ import annotations

import argparse
import math
import re
import shutil
import sys
import time
from dataclasses import dataclass, field
from datetime import date, datetime
from pathlib import Path

import numpy as np
import polars as pl

from core.events import RECEIVED
from core.periods import month_window

DEFAULT_MONTHS = ("2026-08", "2026-09", "2026-10")
MAX_ROWS_PER_FILE = 1_000_000
MIN_PARTS_PER_MONTH = 4
UNKNOWN_CUSTOMER = "C-UNKNOWN-1"
COLUMNS = RECEIVED  # what a source delivers (core/events.py)

# Metered products, in the order of the columns of the per-customer product mix.
METERED = ("API_CALLS", "STORAGE_GB", "SMS", "BANDWIDTH_GB", "ACTIVE_USERS")
_MIX_BASE = np.array([0.55, 0.08, 0.17, 0.12, 0.08])  # share of events per product, before masking
_MIX_USES = np.array([1.0, 0.6, 0.45, 0.55, 0.7])  # probability that a customer uses the product

_PREFIXES = (
    "Acme", "Northwind", "Globex", "Initech", "Umbrella", "Hooli", "Vandelay", "Stark", "Wayne", "Tyrell",
    "Soylent", "Cyberdyne", "Massive", "Wonka", "Oceanic", "Aperture", "Gringotts", "Duff", "Monarch",
    "Pied Piper", "Contoso", "Fabrikam", "Tailspin", "Litware", "Adventure", "Blue Yonder", "Wide World",
    "Alpine", "Coho", "Lucerne", "Margie", "Proseware", "Trey", "Woodgrove", "Fourth Coffee", "Nod",
)
_INDUSTRIES = (
    "Logistics", "Analytics", "Robotics", "Health", "Foods", "Media", "Systems", "Energy", "Payments",
    "Labs", "Retail", "Travel", "Security", "Bank", "Games", "Freight", "Insurance", "Telecom", "Cloud",
    "Biotech", "Motors", "Studios", "Networks", "Markets",
)
_BRANCHES = ("West", "East", "EMEA", "APAC", "Nordics", "Iberia")
_ZONES = ("America/New_York", "America/Los_Angeles", "Europe/Berlin", "Asia/Tokyo", "Australia/Sydney",
          "Europe/Budapest", "America/Sao_Paulo")
_COMMITMENTS = ("500.00", "1000.00", "2500.00", "5000.00", "12000.00")


@dataclass(frozen=True)
class PlantedDefect:
    kind: str  # malformed_quantity | negative_quantity | duplicate_event | unknown_customer |
    #            no_price | naive_timestamp | duplicate_file
    file: str  # file name inside the inbox
    row: int | None  # 1-based data row (header excluded); None for a whole file
    event_id: str | None
    detail: str
    customer_id: str | None = None  # the planted row's customer


@dataclass(frozen=True)
class DemoSummary:
    out_dir: Path
    catalog: Path
    inbox: Path
    months: tuple[str, ...]
    seed: int
    customers: int  # customers in the catalog
    events: int  # generated events: distinct, valid, for known customers
    extra_rows: int  # rows added by planted defects inside files (not counting the re-delivered file)
    rows_written: int  # every data row in every file: events + extra_rows + rows of the re-delivered file
    files: tuple[Path, ...]  # every usage file written, in name order
    rows_per_file: dict[str, int] = field(default_factory=dict)
    defects: tuple[PlantedDefect, ...] = ()

    def planted_blocking_findings(self) -> frozenset[tuple[str, str]]:
        """(check, customer) of the blocking findings the planted defects make on the last month: its
        unrated usage, the unknown customer and the EUR customer's SMS (no EUR price)."""
        return frozenset(("unrated_usage", d.customer_id) for d in self.defects
                         if d.kind in ("unknown_customer", "no_price") and d.customer_id)

    def describe(self) -> str:
        lines = [
            f"demo dataset in {self.out_dir} (seed {self.seed}, months {', '.join(self.months)})",
            f"  catalog: {self.catalog} ({self.customers} customers)",
            f"  usage:   {len(self.files)} files in {self.inbox}, {self.events:,} events, "
            f"{self.rows_written:,} rows written ({self.extra_rows} planted extra rows"
            f"{' + a re-delivered file' if any(d.kind == 'duplicate_file' for d in self.defects) else ''})",
        ]
        if self.defects:
            lines.append("  planted defects:")
            for d in self.defects:
                where = f"{d.file} row {d.row}" if d.row is not None else d.file
                lines.append(f"    {d.kind:<19} {where}: {d.detail}")
        else:
            lines.append("  planted defects: none")
        return "\n".join(lines)


# --------------------------------------------------------------------------------------------------
# months


def _month_bounds(month: str) -> tuple[datetime, datetime]:
    if not re.fullmatch(r"\d{4}-\d{2}", month):
        raise ValueError(f"month {month!r} must be written YYYY-MM, e.g. 2026-10")
    return month_window(month).utc_window()  # core/periods.py (refuses month 13)


def _split(total: int, weights: np.ndarray) -> list[int]:
    """Integers summing to `total`, proportional to `weights` (largest remainders, ties by position)."""
    share = total * weights / weights.sum()
    counts = np.floor(share).astype(np.int64)
    left = total - int(counts.sum())
    order = np.argsort(-(share - counts), kind="stable")
    counts[order[:left]] += 1
    return [int(c) for c in counts]


# --------------------------------------------------------------------------------------------------
# customers and catalog


@dataclass
class _Customers:
    ids: list[str]
    names: list[str]
    currency: list[str]
    timezone: list[str | None]
    bill_to: list[str | None]
    rate_class: list[str | None]
    weight: np.ndarray  # share of events
    mix_cum: np.ndarray  # (customers, METERED) cumulative product probabilities
    storage_gb: np.ndarray  # typical storage level
    users: np.ndarray  # typical active users


def _customers(n: int, seed: int) -> _Customers:
    rng = np.random.default_rng([seed, 1])
    width = max(4, len(str(n)))
    ids = [f"C-{i + 1:0{width}d}" for i in range(n)]
    prefix = rng.integers(0, len(_PREFIXES), n)
    industry = rng.integers(0, len(_INDUSTRIES), n)
    names = [f"{_PREFIXES[p]} {_INDUSTRIES[s]} {i + 1:03d}" for i, (p, s) in enumerate(zip(prefix, industry, strict=True))]

    currency = ["USD"] * n
    for i in rng.choice(n, size=max(2, round(0.15 * n)), replace=False):
        currency[int(i)] = "EUR"
    timezone: list[str | None] = [None] * n
    for k, i in enumerate(rng.choice(n, size=max(3, n // 30), replace=False)):
        timezone[int(i)] = _ZONES[k % len(_ZONES)]

    # A handful of child accounts, each billing to a parent in the same currency.
    bill_to: list[str | None] = [None] * n
    n_children = max(3, n // 40)
    children = rng.choice(np.arange(n // 2, n), size=n_children, replace=False)
    for k, child in enumerate(sorted(int(c) for c in children)):
        candidates = [i for i in range(n // 2) if currency[i] == currency[child]]
        parent = candidates[int(rng.integers(0, len(candidates)))]
        bill_to[child] = ids[parent]
        names[child] = f"{names[parent]} {_BRANCHES[k % len(_BRANCHES)]}"

    # About one in ten customers is on a price list of its own (the contracts add more).
    rate_class: list[str | None] = [None] * n
    for i in np.flatnonzero(rng.random(n) < 0.1):
        rate_class[int(i)] = "ENTERPRISE" if currency[int(i)] == "USD" else "EU"

    # Zipf-like skew over a random ranking: a few big customers, a long tail.
    rank = rng.permutation(n) + 1
    weight = 1.0 / rank.astype(np.float64)
    weight /= weight.sum()

    uses = rng.random((n, len(METERED))) < _MIX_USES
    uses[:, 0] = True
    eur = [i for i in range(n) if currency[i] == "EUR"]
    uses[eur, METERED.index("SMS")] = False  # SMS has no EUR price: EUR SMS is only the planted `no_price` row
    mix = uses * _MIX_BASE
    mix_cum = np.cumsum(mix / mix.sum(axis=1, keepdims=True), axis=1)
    mix_cum[:, -1] = 1.0
    storage_gb = np.exp(rng.normal(np.log(150), 1.2, n))
    users = np.maximum(1, np.round(np.exp(rng.normal(np.log(40), 1.0, n)))).astype(np.int64)
    return _Customers(ids, names, currency, timezone, bill_to, rate_class, weight, mix_cum, storage_gb, users)


def _flow(**fields) -> str:
    """A one-line YAML mapping; strings that need it are double-quoted."""
    parts = []
    for key, value in fields.items():
        if value is None:
            continue
        if isinstance(value, bool):  # a YAML boolean, not the text "true"
            parts.append(f"{key}: {'true' if value else 'false'}")
            continue
        text = str(value)
        plain = re.fullmatch(r"[A-Za-z][A-Za-z0-9_/\-]*|\d+|\d{4}-\d{2}-\d{2}", text)
        if not plain or text.lower() in ("true", "false", "null", "yes", "no", "on", "off", "y", "n"):
            text = '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'
        parts.append(f"{key}: {text}")
    return "{" + ", ".join(parts) + "}"


def _tiers(*tiers: tuple[int | None, str]) -> list[str]:
    out = ["    tiers:"]
    for up_to, price in tiers:
        out.append("      - " + (_flow(up_to=up_to, unit_price=price) if up_to is not None
                                 else _flow(unit_price=price)))
    return out


def _catalog_yaml(c: _Customers, months: tuple[str, ...], seed: int) -> str:
    rng = np.random.default_rng([seed, 2])
    first, _ = _month_bounds(months[0])
    last, _ = _month_bounds(months[-1])
    mid = _month_bounds(months[len(months) // 2])[0]
    since = date(first.year - 1, 1, 1).isoformat()
    first_day, last_day = first.date().isoformat(), last.date().isoformat()
    mid_15 = mid.date().replace(day=15).isoformat()
    last_16 = last.date().replace(day=16).isoformat()
    n = len(c.ids)

    out = [
        f"# Demo catalog generated by demo.dataset (seed {seed}, {n} customers, months {', '.join(months)}).",
        "# Format: catalog/load.py. Regenerate with: python -m demo.dataset OUT_DIR",
        "",
        "products:",
        "  - code: API_CALLS",
        "    name: API calls",
        "    unit: call",
        "    aggregation: sum",
        "    prices:",
        "      - " + _flow(currency="USD", model="per_unit", unit_price="0.002"),
        "      - " + _flow(currency="EUR", model="per_unit", unit_price="0.0019"),
        "  - code: STORAGE_GB",
        "    name: Storage",
        "    unit: GB",
        "    aggregation: max",
        "    prices:",
        "      - currency: USD",
        "        model: graduated",
        *["    " + t for t in _tiers((100, "0.10"), (1000, "0.08"), (None, "0.05"))],
        "      - currency: EUR",
        "        model: graduated",
        *["    " + t for t in _tiers((100, "0.09"), (1000, "0.07"), (None, "0.045"))],
        "  - code: SMS",
        "    name: Text messages",
        "    unit: message",
        "    aggregation: sum",
        "    prices:  # no EUR price on purpose: EUR customers' SMS usage is reported as unrated",
        "      - " + _flow(currency="USD", model="package", package_size=100, package_price="1.50"),
        "  - code: BANDWIDTH_GB",
        "    name: Bandwidth",
        "    unit: GB",
        "    aggregation: sum",
        "    prices:",
        "      - currency: USD",
        "        model: volume",
        *["    " + t for t in _tiers((1000, "0.09"), (10000, "0.07"), (None, "0.05"))],
        "      - currency: EUR",
        "        model: volume",
        *["    " + t for t in _tiers((1000, "0.085"), (10000, "0.065"), (None, "0.045"))],
        "  - code: ACTIVE_USERS",
        "    name: Active users",
        "    unit: user",
        "    aggregation: max",
        "    prices:  # the USD list price rises at the start of the last month",
        "      - " + _flow(currency="USD", model="per_unit", unit_price="4.00", effective_to=last_day),
        "      - " + _flow(currency="USD", model="per_unit", unit_price="4.50", effective_from=last_day),
        "      - " + _flow(currency="EUR", model="per_unit", unit_price="3.70"),
        "  - code: SUPPORT",
        "    name: Premium support",
        "    unit: month",
        "    aggregation: none",
        "    prices:",
        "      - " + _flow(currency="USD", model="flat_fee", amount="500.00"),
        "      - " + _flow(currency="EUR", model="flat_fee", amount="460.00"),
        "",
        "rate_classes:",
        "  - id: ENTERPRISE",
        "    name: Enterprise price list",
        "    currency: USD",
        "    prices:",
        "      - " + _flow(product="API_CALLS", model="per_unit", unit_price="0.0015"),
        "      - product: STORAGE_GB",
        "        model: graduated",
        *["    " + t for t in _tiers((1000, "0.07"), (None, "0.04"))],
        "      - product: BANDWIDTH_GB",
        "        model: volume",
        *["    " + t for t in _tiers((1000, "0.08"), (None, "0.06"))],
        "  - id: EU",
        "    name: European price list",
        "    currency: EUR",
        "    prices:",
        "      - " + _flow(product="API_CALLS", model="per_unit", unit_price="0.0017"),
        "      - " + _flow(product="ACTIVE_USERS", model="per_unit", unit_price="3.50"),
        "",
        "customers:",
    ]
    # carl is the CSM of the first two top-level accounts; the first needs his approval of its invoices
    managed = [i for i in range(n) if c.bill_to[i] is None][:2]
    for i in range(n):
        csm = "carl" if i in managed else None
        out.append("  - " + _flow(id=c.ids[i], name=c.names[i], currency=c.currency[i], timezone=c.timezone[i],
                                  bill_to=c.bill_to[i], rate_class=c.rate_class[i], csm=csm,
                                  require_csm_approval=True if i == managed[0] else None))

    # Contracts on ~25% of the customers (not on child accounts: they bill through their parent).
    out += ["", "contracts:"]
    eligible = np.array([i for i in range(n) if c.bill_to[i] is None])
    chosen = sorted(int(i) for i in rng.choice(eligible, size=max(4, round(0.25 * n)), replace=False))
    for k, i in enumerate(chosen):
        usd = c.currency[i] == "USD"
        rate_class = ("ENTERPRISE" if rng.random() < 0.5 else None) if usd else ("EU" if rng.random() < 0.8 else None)
        start, end = since, None
        if k % 10 == 3:
            start = mid_15  # a contract starting inside the months: prices change mid-period
        elif k % 10 == 7:
            end = last_day  # a contract ending before the last month
        commitment = _COMMITMENTS[int(rng.integers(0, len(_COMMITMENTS)))] if k % 5 in (0, 2) else None
        out += [f"  - id: CT-{c.ids[i][2:]}", f"    customer: {c.ids[i]}", f"    currency: {c.currency[i]}"]
        if rate_class:
            out.append(f"    rate_class: {rate_class}")
        out.append(f"    effective_from: {start}")
        if end:
            out.append(f"    effective_to: {end}")
        if commitment:
            out.append(f'    minimum_commitment: "{commitment}"')
        rates = []
        if k % 2 == 0:
            price = ("0.0012", "0.0014")[k % 4 // 2] if usd else "0.0013"
            rates.append(_flow(product="API_CALLS", model="per_unit", unit_price=price,
                               included_units=(100000, 500000)[k % 4 // 2]))
        if k % 3 == 1:
            rates.append(_flow(product="ACTIVE_USERS", model="per_unit", unit_price="3.25" if usd else "3.00",
                               included_units=10))
        if k % 6 == 5:
            rates.append(_flow(product="STORAGE_GB", model="graduated", included_units=50)[:-1]
                         + ", tiers: [{up_to: 500, unit_price: \"0.06\"}, {unit_price: \"0.035\"}]}")
        if rates:
            out.append("    rates:")
            out += [f"      - {r}" for r in rates]

    # Provisioned products: SUPPORT for a few accounts (one starting mid-month), plus two overrides.
    out += ["", "account_products:"]
    parents = [i for i in range(n) if c.bill_to[i] is None]
    picks = [int(i) for i in rng.choice(parents, size=6, replace=False)]
    for k, i in enumerate(picks[:4]):
        start = first_day if k != 1 else mid_15
        out.append("  - " + _flow(id=f"AP-{c.ids[i]}-SUPPORT", customer=c.ids[i], product="SUPPORT",
                                  effective_from=start))
    override = next(i for i in picks[4:] + parents if c.currency[i] == "USD")
    out.append("  - " + _flow(id=f"AP-{c.ids[override]}-API", customer=c.ids[override], product="API_CALLS",
                              effective_from=last_16, model="per_unit", unit_price="0.001"))
    out.append("  - " + _flow(id=f"AP-{c.ids[picks[5]]}-SUPPORT", customer=c.ids[picks[5]], product="SUPPORT",
                              effective_from=first_day, model="flat_fee",
                              amount="350.00" if c.currency[picks[5]] == "USD" else "320.00"))
    return "\n".join(out) + "\n"


# --------------------------------------------------------------------------------------------------
# usage


def _file_frame(c: _Customers, ids: pl.Series, month: str, month_index: int, part: int, parts: int,
                rows: int, first_n: int, seed: int) -> pl.DataFrame:
    """`rows` events of one file: part `part` (1-based) of `parts` slices of the month, in time order."""
    rng = np.random.default_rng([seed, 3, month_index, part])
    start, end = _month_bounds(month)
    t0, t1 = int(start.timestamp()), int(end.timestamp())
    lo = t0 + (t1 - t0) * (part - 1) // parts
    hi = t0 + (t1 - t0) * part // parts
    seconds = np.sort(rng.integers(lo, hi, rows))

    customer = np.searchsorted(np.cumsum(c.weight), rng.random(rows) * c.weight.sum(), side="right")
    customer = np.minimum(customer, len(c.weight) - 1)
    product = (rng.random(rows)[:, None] > c.mix_cum[customer]).sum(axis=1)
    product = np.minimum(product, len(METERED) - 1)

    # Quantities in thousandths (exact integers), one draw per product kind, picked by product.
    api = (np.floor(np.exp(rng.normal(3.5, 1.3, rows))) + 1).astype(np.int64) * 1000
    storage = np.round(c.storage_gb[customer] * rng.uniform(0.85, 1.15, rows) * 1000)
    storage = np.maximum(1, storage).astype(np.int64)
    sms = rng.geometric(0.04, rows).astype(np.int64) * 1000
    bandwidth = np.maximum(1, np.round(np.exp(rng.normal(0.5, 1.4, rows)) * 1000)).astype(np.int64)
    users = c.users[customer]
    active = np.maximum(1, users - rng.integers(0, users // 5 + 1)) * 1000
    milli = np.choose(product, [api, storage, sms, bandwidth, active])

    whole = pl.Series(milli // 1000).cast(pl.String)
    frac = pl.Series(milli % 1000)
    fraction = (pl.lit(".") + pl.col("_frac").cast(pl.String).str.zfill(3).str.strip_chars_end("0"))
    frame = pl.DataFrame({
        "_n": np.arange(first_n, first_n + rows, dtype=np.int64),
        "customer_id": ids.gather(customer),
        "product_id": pl.Series(METERED).gather(product),
        "_whole": whole,
        "_frac": frac,
        "_t": pl.from_epoch(pl.Series(seconds), time_unit="s"),
    })
    return frame.select(
        (pl.lit(f"ev-{month}-") + pl.col("_n").cast(pl.String)).alias("event_id"),
        "customer_id",
        "product_id",
        pl.when(pl.col("_frac") > 0).then(pl.col("_whole") + fraction).otherwise(pl.col("_whole")).alias("quantity"),
        pl.col("_t").dt.strftime("%Y-%m-%dT%H:%M:%SZ").alias("occurred_at"),
    )


def _write(frame: pl.DataFrame, path: Path) -> None:
    """Write next to the target and rename, so an inbox poller never sees half a file."""
    tmp = path.with_name(path.name + ".part")
    if path.suffix == ".csv":
        frame.write_csv(tmp, line_terminator="\n")
    else:
        frame.write_ndjson(tmp)
    tmp.replace(path)


_OUR_FILES = re.compile(r"usage-\d{4}-\d{2}-part\d+(_resent)?\.(csv|jsonl)")


def generate_demo(out_dir: Path, *, customers: int = 240, events: int = 60_000,
                  months: tuple[str, ...] = DEFAULT_MONTHS, seed: int = 7,
                  defects: bool = True, formats: tuple[str, ...] = ("csv", "jsonl")) -> DemoSummary:
    """Write `out_dir/catalog.yaml` and usage files into `out_dir/inbox/`; see the module docstring.

    `formats` are the file formats of parts 1, 2, 3, ... in turn (`csv`, `jsonl`): the default
    alternates (odd parts CSV, even parts JSON lines); `("csv",)` writes CSV files only (the benchmark's
    `--formats csv`).

    Usage files left in the inbox by an earlier run under this generator's names
    (`usage-YYYY-MM-partN[_resent].csv|jsonl`) and not written by this run are removed, so the inbox
    holds exactly this dataset; other files there are left alone.
    """
    out_dir = Path(out_dir)
    months = tuple(months)
    if customers < 20:
        raise ValueError(f"customers must be at least 20 (child accounts, contracts, ...), got {customers}")
    if events < 0:
        raise ValueError(f"events must not be negative, got {events}")
    if not months or len(set(months)) != len(months):
        raise ValueError(f"months must be a non-empty list of distinct YYYY-MM, got {months}")
    for m in months:
        _month_bounds(m)
    formats = tuple(formats)
    if not formats or any(f not in ("csv", "jsonl") for f in formats):
        raise ValueError(f"formats must be a non-empty list of csv / jsonl, got {formats}")

    c = _customers(customers, seed)
    inbox = out_dir / "inbox"
    inbox.mkdir(parents=True, exist_ok=True)
    catalog = out_dir / "catalog.yaml"
    catalog.write_text(_catalog_yaml(c, months, seed), encoding="utf-8")
    (out_dir / "people.yaml").write_text(DEMO_PEOPLE, encoding="utf-8")  # <home>/people.yaml: the default

    per_month = _split(events, 1.0 + 0.06 * np.arange(len(months)))
    plan = {i: max(MIN_PARTS_PER_MONTH, math.ceil(n / MAX_ROWS_PER_FILE)) for i, n in enumerate(per_month)}
    per_part = {i: _split(per_month[i], np.ones(plan[i])) for i in plan}
    first_m, second_m, last_m = 0, min(1, len(months) - 1), len(months) - 1
    if defects:
        targets = [(first_m, 1), (first_m, 2), (second_m, 1), (second_m, 4), (last_m, 1), (last_m, 2), (last_m, 3)]
        empty = [f"usage-{months[m]}-part{p}" for m, p in targets if per_part[m][p - 1] == 0]
        if empty:
            raise ValueError(f"too few events ({events}) to plant defects: {', '.join(empty)} would be empty; "
                             "raise events or pass defects=False")

    ids = pl.Series(c.ids, dtype=pl.String)
    # The `no_price` defect's customer: the biggest EUR customer billed on its own (not a child account).
    no_price_customer = c.ids[max((i for i in range(customers) if c.currency[i] == "EUR" and c.bill_to[i] is None),
                                  key=lambda i: c.weight[i])]
    written: list[Path] = []
    rows_per_file: dict[str, int] = {}
    planted: list[PlantedDefect] = []
    extra_rows = 0
    resend: tuple[Path, str] | None = None
    for mi, month in enumerate(months):
        next_n = 1
        extra_n = per_month[mi] + 1  # event ids for planted rows continue the month's numbering
        for part in range(1, plan[mi] + 1):
            rows = per_part[mi][part - 1]
            frame = _file_frame(c, ids, month, mi, part, plan[mi], rows, next_n, seed)
            next_n += rows
            name = f"usage-{month}-part{part}.{formats[(part - 1) % len(formats)]}"
            if defects:
                inserts = []
                if (mi, part) == (first_m, 1):
                    inserts.append(_planted_row(frame, rows // 2, "malformed_quantity", f"ev-{month}-{extra_n}",
                                                quantity="N/A", detail="quantity 'N/A' is not a number"))
                    extra_n += 1
                if (mi, part) == (first_m, 2):
                    inserts.append(_planted_row(frame, rows // 3, "negative_quantity", f"ev-{month}-{extra_n}",
                                                product_id="BANDWIDTH_GB", quantity="-2.5",
                                                detail="quantity '-2.5' is negative"))
                    extra_n += 1
                if (mi, part) == (second_m, 1):
                    k = rows // 2
                    original = frame.slice(k, 1)
                    inserts.append((min(k + 4, rows), original, "duplicate_event", original["event_id"][0],
                                    "repeats row {ref} exactly (same event id, same payload)", k))
                if (mi, part) == (last_m, 1):
                    inserts.append(_planted_row(frame, rows // 2, "no_price", f"ev-{month}-{extra_n}",
                                                customer_id=no_price_customer, product_id="SMS", quantity="240",
                                                detail=f"SMS for EUR customer '{no_price_customer}': the catalog "
                                                       "has no EUR price for SMS"))
                    extra_n += 1
                if (mi, part) == (last_m, 2):
                    for j, q in enumerate(("120", "75", "3000")):
                        inserts.append(_planted_row(frame, rows * (j + 1) // 4, "unknown_customer",
                                                    f"ev-{month}-{extra_n}", customer_id=UNKNOWN_CUSTOMER,
                                                    product_id="API_CALLS", quantity=q,
                                                    detail=f"customer '{UNKNOWN_CUSTOMER}' is not in the catalog"))
                        extra_n += 1
                if (mi, part) == (last_m, 3):
                    row = _planted_row(frame, rows // 2, "naive_timestamp", f"ev-{month}-{extra_n}", detail="")
                    ts = row[1]["occurred_at"][0].removesuffix("Z")
                    inserts.append((row[0], row[1].with_columns(occurred_at=pl.lit(ts)), row[2], row[3],
                                    f"occurred_at '{ts}' has no time zone", None))
                    extra_n += 1
                if inserts:
                    frame, found = _apply(frame, inserts, name)
                    planted += found
                    extra_rows += len(found)
            path = inbox / name
            _write(frame, path)
            written.append(path)
            rows_per_file[name] = frame.height
            if defects and (mi, part) == (second_m, 4):
                resend = (path, name)
            del frame

    if resend is not None:
        path, name = resend
        copy = path.with_name(path.stem + "_resent" + path.suffix)
        tmp = copy.with_name(copy.name + ".part")
        shutil.copyfile(path, tmp)
        tmp.replace(copy)
        written.append(copy)
        rows_per_file[copy.name] = rows_per_file[name]
        planted.append(PlantedDefect("duplicate_file", copy.name, None, None,
                                     f"the same bytes as {name}, delivered again under another name"))

    keep = {p.name for p in written}
    for stale in inbox.iterdir():
        if stale.is_file() and _OUR_FILES.fullmatch(stale.name) and stale.name not in keep:
            stale.unlink()

    written.sort(key=lambda p: p.name)
    return DemoSummary(
        out_dir=out_dir, catalog=catalog, inbox=inbox, months=months, seed=seed, customers=customers,
        events=events, extra_rows=extra_rows, rows_written=sum(rows_per_file.values()), files=tuple(written),
        rows_per_file=dict(sorted(rows_per_file.items())), defects=tuple(planted),
    )


def _planted_row(frame: pl.DataFrame, at: int, kind: str, event_id: str, *, detail: str,
                 **values: str) -> tuple[int, pl.DataFrame, str, str, str, None]:
    """A new row inserted before row index `at`, copying its neighbour's customer, product and time."""
    neighbour = frame.slice(min(at, frame.height - 1), 1)
    row = neighbour.with_columns(event_id=pl.lit(event_id), **{k: pl.lit(v) for k, v in values.items()})
    return at, row, kind, event_id, detail, None


def _apply(frame: pl.DataFrame, inserts: list, name: str) -> tuple[pl.DataFrame, list[PlantedDefect]]:
    """Insert one-row frames before the given original row indexes; report their final row numbers.

    A detail may name an original row as `{ref}` (its 0-based index in the entry's last field); it
    is written as that row's final 1-based number.
    """
    pieces, found, previous = [], [], 0
    for at, row, kind, event_id, detail, ref in sorted(inserts, key=lambda x: x[0]):
        if ref is not None:
            detail = detail.format(ref=ref + 1 + sum(1 for other in inserts if other[0] <= ref))
        pieces.append(frame.slice(previous, at - previous))
        previous = at
        final = at + len(found) + 1  # 1-based, after the rows inserted before it
        pieces.append(row.select(COLUMNS))
        found.append(PlantedDefect(kind, name, final, event_id, detail, row["customer_id"][0]))
    pieces.append(frame.slice(previous))
    return pl.concat(pieces), found


# The people of the demo's invoice lifecycle (docs/lifecycle.md): who approves, issues and audits.
DEMO_PEOPLE = """\
# Made by `billing demo`: the people of the invoice lifecycle (docs/lifecycle.md).
people:
  - {id: fiona, name: Fiona Finch, email: fiona@example.com, role: finance}
  - {id: fay, name: Fay Fernandez, email: fay@example.com, role: finance}
  - {id: carl, name: Carl Castillo, email: carl@example.com, role: customer_success}
  - {id: sam, name: Sam Sato, email: sam@example.com, role: sales}
  - {id: ada, name: Ada Auditor, email: ada@example.com, role: auditor}
"""


# --------------------------------------------------------------------------------------------------
# the demo's home

HOME_MARKER = ".billing-demo"  # written into a BILLING_HOME the demo made: only such a home is ever cleared


class DemoHomeRefused(RuntimeError):
    """BILLING_HOME holds things the demo did not create: it is not cleared, and the demo does not run."""


def prepare_home(home: Path) -> Path:
    """Make `home` an empty demo home with its marker, and return it.

    An absent or empty folder is used (and marked); a folder holding the marker is the demo's own and is
    cleared of everything (the warehouse, landing zone and inbox of the last demo); any other folder is
    refused with `DemoHomeRefused`, untouched: it may be a real warehouse and the copies of what was received.
    """
    home = Path(home)
    if home.exists() and not home.is_dir():
        raise DemoHomeRefused(f"BILLING_HOME {home} is a file, not a folder; the demo needs a folder of its own")
    if home.is_dir():
        entries = sorted(p.name for p in home.iterdir())
        if entries and HOME_MARKER not in entries:
            shown = ", ".join(entries[:5]) + (f" and {len(entries) - 5} more" if len(entries) > 5 else "")
            raise DemoHomeRefused(
                f"BILLING_HOME {home} is not empty ({shown}) and was not made by the demo (no {HOME_MARKER} "
                "file in it). The demo clears its home before every run, so it does not use this one: nothing "
                "in it was touched. Point BILLING_HOME at a new or empty folder, e.g. "
                "BILLING_HOME=./demo-data make demo")
        if entries:  # the demo's own home: start again from a clean slate
            shutil.rmtree(home)
    home.mkdir(parents=True, exist_ok=True)
    (home / HOME_MARKER).write_text(
        "Made by `billing demo`: the next `billing demo` with this BILLING_HOME deletes this folder and\n"
        "everything in it. Remove this file to keep the folder from being cleared (the demo then refuses it).\n",
        encoding="utf-8")
    return home


# --------------------------------------------------------------------------------------------------
# command line


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m demo.dataset", description=__doc__.splitlines()[0])
    parser.add_argument("out_dir", type=Path, help="folder to write catalog.yaml and inbox/ into")
    parser.add_argument("--customers", type=int, default=240)
    parser.add_argument("--events", type=int, default=60_000)
    parser.add_argument("--months", default=",".join(DEFAULT_MONTHS), help="comma-separated YYYY-MM")
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--no-defects", action="store_true", help="plant no defects")
    args = parser.parse_args(argv)
    started = time.perf_counter()
    try:
        summary = generate_demo(args.out_dir, customers=args.customers, events=args.events,
                                months=tuple(m.strip() for m in args.months.split(",") if m.strip()),
                                seed=args.seed, defects=not args.no_defects)
    except ValueError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(summary.describe())
    print(f"  took {time.perf_counter() - started:.1f}s")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
