"""Great Expectations suites on the normalized events and the invoice marts of one billing month.

Suites are defined here, in code (no GX project folder): `raw_events`, `fct_invoices`,
`fct_invoice_lines` and `fct_invoice_line_tiers`. Each validates the period's rows, read through
the project's `Warehouse` (DuckDB or PostgreSQL) into a pandas frame, in an ephemeral GX context
(one per process). Decimal columns stay Python `Decimal`s (pandas object columns): every
comparison that matters (quantity >= 0, amount = round(amount_unrounded), decimals of an amount)
is made on exact decimals, never on binary floats.

Some expectations read derived columns computed here from the row itself, exactly, with the
project's money rules (core/money.py): `minor_units` of the currency, `amount_decimals`,
`amount_expected` (amount_unrounded rounded once to the currency's minor unit), and so on; their
names say what they hold.

Each result is kept as Great Expectations' validation-result JSON under
`<BILLING_HOME>/quality/validations/<period>/<run_id>/<suite>.json`, with its Data Docs page next to
it (`<suite>.html`; see docs/quality.md). The suites make two checks, `events_expectations`
(raw_events) and `invoice_expectations` (the three invoice marts), run by `run_checks`: Dagster runs
each as an asset check (pipelines/checks.py), `billing run --expectations` runs both after the other
checks (billing/runner.py); their failures also land in marts.quality_findings.
"""

from __future__ import annotations

import json
import logging
import os
import re
import threading
import uuid
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import date, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

import polars as pl

from core import enums, events
from core.money import MINOR_UNITS, round_money
from core.periods import Period
from warehouse.store import Tx, Warehouse

from .findings import CheckOutcome, write_findings

logger = logging.getLogger(__name__)

# No usage statistics to the outside, whatever the environment says: set before GX is imported
# (GX is imported lazily, on the first validation, so importing this module stays cheap).
os.environ["GX_ANALYTICS_ENABLED"] = "false"

CURRENCIES = tuple(sorted(MINOR_UNITS))
INVOICE_STATUSES = enums.INVOICE_STATUSES  # a rerun of an issued month shows it issued (or void)
LINE_TYPES = enums.LINE_TYPES
RATE_LEVELS = enums.LINE_RATE_LEVELS
PRICING_MODELS = enums.LINE_PRICING_MODELS
EVENT_COLUMNS = events.STORED  # raw.events' columns (core/events.py)
SAMPLE_ROWS = 20  # unexpected rows kept per failed expectation in the check's metadata
FINDING_ROWS = 200  # unexpected rows written as findings per failed expectation

EVENTS_CHECK = "events_expectations"
INVOICES_CHECK = "invoice_expectations"


# --- the period's rows, with derived columns -------------------------------------------------------

def _decimals(value: Decimal | None) -> int | None:
    """Digits after the decimal point that carry something: 12.500 -> 1, 180.000 -> 0."""
    if value is None:
        return None
    exponent = value.normalize().as_tuple().exponent
    return max(0, -exponent) if isinstance(exponent, int) else None


def _minor(currency: str | None) -> int | None:
    return MINOR_UNITS.get(currency) if currency else None


def _expected_amount(amount_unrounded: Decimal | None, currency: str | None) -> Decimal | None:
    if amount_unrounded is None or _minor(currency) is None:
        return None
    return round_money(amount_unrounded, currency)


def _with(frame: pl.DataFrame, name: str, fn: Callable[[dict], Any], dtype: pl.DataType) -> pl.DataFrame:
    """Add a column computed row by row in Python (exact Decimal arithmetic, no floats)."""
    values = [fn(row) for row in frame.iter_rows(named=True)]
    return frame.with_columns(pl.Series(name, values, dtype=dtype))


def load_events(tx: Tx, period: Period) -> pl.DataFrame:
    """Events of the period: every event in the period's padded UTC window (so every local month is
    inside), plus any event anywhere that repeats one of their (source, event_id)."""
    lo, hi = period.padded_window()
    return tx.frame(f"""
        SELECT {', '.join(EVENT_COLUMNS)} FROM raw.events
        WHERE (source, event_id) IN (SELECT source, event_id FROM raw.events
                                     WHERE occurred_at >= ? AND occurred_at < ?)
        ORDER BY file_id, row_number, source, event_id""", [lo, hi])


def load_invoices(tx: Tx, period: Period) -> pl.DataFrame:
    frame = tx.frame("SELECT * FROM marts.fct_invoices WHERE period = ? ORDER BY invoice_id", [period.key])
    frame = _with(frame, "minor_units", lambda r: _minor(r["currency"]), pl.Int64)
    frame = _with(frame, "total_decimals", lambda r: _decimals(r["total"]), pl.Int64)
    return _with(frame, "is_finalizable_expected",
                 lambda r: None if r["unrated_usage_count"] is None else r["unrated_usage_count"] == 0, pl.Boolean)


def load_lines(tx: Tx, period: Period) -> pl.DataFrame:
    frame = tx.frame("SELECT * FROM marts.fct_invoice_lines WHERE period = ? ORDER BY line_id", [period.key])
    frame = _with(frame, "minor_units", lambda r: _minor(r["currency"]), pl.Int64)
    frame = _with(frame, "amount_decimals", lambda r: _decimals(r["amount"]), pl.Int64)
    frame = _with(frame, "amount_expected", lambda r: _expected_amount(r["amount_unrounded"], r["currency"]),
                  pl.Decimal(38, 12))
    return _with(frame, "billable_quantity_expected",
                 lambda r: None if r["quantity"] is None or r["included_units"] is None
                 else max(r["quantity"] - r["included_units"], Decimal(0)), pl.Decimal(38, 9))


def load_tiers(tx: Tx, period: Period) -> pl.DataFrame:
    return tx.frame("SELECT * FROM marts.fct_invoice_line_tiers WHERE period = ? ORDER BY line_id, tier_number",
                    [period.key])


# --- the suites ------------------------------------------------------------------------------------

def _events_suite(period: Period, frames: dict[str, pl.DataFrame]) -> list:
    import great_expectations.expectations as gxe

    exps = [gxe.ExpectTableColumnsToMatchSet(column_set=list(EVENT_COLUMNS), exact_match=True)]
    exps += [gxe.ExpectColumnValuesToNotBeNull(column=c) for c in EVENT_COLUMNS]
    exps += [
        gxe.ExpectCompoundColumnsToBeUnique(column_list=["source", "event_id"]),
        gxe.ExpectCompoundColumnsToBeUnique(column_list=["file_id", "row_number"]),
        gxe.ExpectColumnValuesToBeOfType(column="quantity", type_="Decimal"),
        gxe.ExpectColumnValuesToBeBetween(column="quantity", min_value=0),
        gxe.ExpectColumnValuesToBeOfType(column="occurred_at", type_="Timestamp"),
        gxe.ExpectColumnValuesToBeOfType(column="loaded_at", type_="Timestamp"),
        gxe.ExpectColumnValuesToBeOfType(column="row_number", type_="int64"),
        gxe.ExpectColumnValuesToBeBetween(column="row_number", min_value=1),
        gxe.ExpectColumnValuesToMatchRegex(column="file_id", regex=r"^[0-9a-f]{64}$"),
    ]
    exps += [gxe.ExpectColumnValueLengthsToBeBetween(column=c, min_value=1)
             for c in ("source", "event_id", "customer_id", "product_id")]
    return exps


def _invoices_suite(period: Period, frames: dict[str, pl.DataFrame]) -> list:
    import great_expectations.expectations as gxe

    return [
        *(gxe.ExpectColumnValuesToNotBeNull(column=c) for c in (
            "invoice_id", "billing_account_id", "currency", "period_start", "period_end", "line_count", "total",
            "unrated_usage_count", "is_finalizable", "status")),
        gxe.ExpectColumnValuesToBeUnique(column="invoice_id"),
        gxe.ExpectCompoundColumnsToBeUnique(column_list=["billing_account_id", "currency"]),
        gxe.ExpectColumnValuesToBeInSet(column="period", value_set=[period.key]),
        gxe.ExpectColumnValuesToBeInSet(column="currency", value_set=list(CURRENCIES)),
        gxe.ExpectColumnValuesToBeInSet(column="status", value_set=list(INVOICE_STATUSES)),
        gxe.ExpectColumnValuesToBeOfType(column="total", type_="Decimal"),
        gxe.ExpectColumnValuesToBeOfType(column="line_count", type_="int64"),
        gxe.ExpectColumnValuesToBeBetween(column="line_count", min_value=1),
        gxe.ExpectColumnValuesToBeBetween(column="unrated_usage_count", min_value=0),
        gxe.ExpectColumnValuesToBeBetween(column="period_start", min_value=period.start.isoformat(),
                                          max_value=period.start.isoformat()),
        gxe.ExpectColumnValuesToBeBetween(column="period_end", min_value=period.end.isoformat(),
                                          max_value=period.end.isoformat()),
        # the total is rounded: no more decimals than the currency's minor unit
        gxe.ExpectColumnPairValuesAToBeGreaterThanB(column_A="minor_units", column_B="total_decimals",
                                                   or_equal=True, ignore_row_if="either_value_is_missing"),
        gxe.ExpectColumnPairValuesToBeEqual(column_A="is_finalizable", column_B="is_finalizable_expected"),
    ]


def _lines_suite(period: Period, frames: dict[str, pl.DataFrame]) -> list:
    import great_expectations.expectations as gxe

    invoice_ids = frames["fct_invoices"]["invoice_id"].drop_nulls().unique().sort().to_list()
    return [
        *(gxe.ExpectColumnValuesToNotBeNull(column=c) for c in (
            "line_id", "invoice_id", "billing_account_id", "currency", "line_type", "rate_id", "rate_level",
            "pricing_model", "segment_start", "segment_end", "amount_unrounded", "amount")),
        gxe.ExpectColumnValuesToBeUnique(column="line_id"),
        gxe.ExpectColumnValuesToBeInSet(column="period", value_set=[period.key]),
        # every line belongs to one of the period's invoices
        gxe.ExpectColumnValuesToBeInSet(column="invoice_id", value_set=invoice_ids),
        gxe.ExpectColumnValuesToBeInSet(column="currency", value_set=list(CURRENCIES)),
        gxe.ExpectColumnValuesToBeInSet(column="line_type", value_set=list(LINE_TYPES)),
        gxe.ExpectColumnValuesToBeInSet(column="rate_level", value_set=list(RATE_LEVELS)),
        gxe.ExpectColumnValuesToBeInSet(column="pricing_model", value_set=list(PRICING_MODELS)),
        *(gxe.ExpectColumnValuesToBeOfType(column=c, type_="Decimal") for c in (
            "quantity", "included_units", "billable_quantity", "amount_unrounded", "amount")),
        *(gxe.ExpectColumnValuesToBeBetween(column=c, min_value=0) for c in (
            "quantity", "included_units", "billable_quantity", "event_count", "segment_days")),
        gxe.ExpectColumnValuesToBeBetween(column="segment_start", min_value=period.start.isoformat()),
        gxe.ExpectColumnValuesToBeBetween(column="segment_end", max_value=period.end.isoformat()),
        gxe.ExpectColumnPairValuesAToBeGreaterThanB(column_A="segment_end", column_B="segment_start",
                                                   ignore_row_if="either_value_is_missing"),
        # amounts consistent: rounded once, half away from zero, to the currency's minor unit
        gxe.ExpectColumnPairValuesToBeEqual(column_A="amount", column_B="amount_expected",
                                            ignore_row_if="both_values_are_missing"),
        gxe.ExpectColumnPairValuesAToBeGreaterThanB(column_A="minor_units", column_B="amount_decimals",
                                                   or_equal=True, ignore_row_if="either_value_is_missing"),
        gxe.ExpectColumnPairValuesToBeEqual(column_A="billable_quantity", column_B="billable_quantity_expected",
                                            ignore_row_if="both_values_are_missing"),
    ]


def _tiers_suite(period: Period, frames: dict[str, pl.DataFrame]) -> list:
    import great_expectations.expectations as gxe

    line_ids = frames["fct_invoice_lines"]["line_id"].drop_nulls().unique().sort().to_list()
    return [
        *(gxe.ExpectColumnValuesToNotBeNull(column=c) for c in (
            "line_id", "tier_number", "units", "unit_price", "amount_unrounded")),
        gxe.ExpectCompoundColumnsToBeUnique(column_list=["line_id", "tier_number"]),
        gxe.ExpectColumnValuesToBeInSet(column="period", value_set=[period.key]),
        gxe.ExpectColumnValuesToBeInSet(column="line_id", value_set=line_ids),  # a tier of one of the lines
        gxe.ExpectColumnValuesToBeBetween(column="tier_number", min_value=1),
        *(gxe.ExpectColumnValuesToBeOfType(column=c, type_="Decimal") for c in (
            "units", "unit_price", "amount_unrounded")),
        *(gxe.ExpectColumnValuesToBeBetween(column=c, min_value=0) for c in ("units", "unit_price", "flat_fee")),
    ]


@dataclass(frozen=True)
class Suite:
    name: str  # also the JSON file's name
    table: str
    load: Callable[[Tx, Period], pl.DataFrame]
    expectations: Callable[[Period, dict[str, pl.DataFrame]], list]
    keys: tuple[str, ...]  # columns that identify a row, shown in each sample row first


SUITES: dict[str, Suite] = {s.name: s for s in (
    Suite("raw_events", "raw.events", load_events, _events_suite,
          ("source", "event_id", "customer_id", "product_id", "file_id", "row_number")),
    Suite("fct_invoices", "marts.fct_invoices", load_invoices, _invoices_suite,
          ("invoice_id", "billing_account_id", "currency")),
    Suite("fct_invoice_lines", "marts.fct_invoice_lines", load_lines, _lines_suite,
          ("line_id", "invoice_id", "billing_account_id", "product_id")),
    Suite("fct_invoice_line_tiers", "marts.fct_invoice_line_tiers", load_tiers, _tiers_suite,
          ("line_id", "tier_number")),
)}
EVENTS_SUITES = ("raw_events",)
INVOICE_SUITES = ("fct_invoices", "fct_invoice_lines", "fct_invoice_line_tiers")
# The checks the suites make, each with its suites (names of asset checks and of findings' check_name).
CHECK_SUITES: dict[str, tuple[str, ...]] = {EVENTS_CHECK: EVENTS_SUITES, INVOICES_CHECK: INVOICE_SUITES}


# --- running them ----------------------------------------------------------------------------------

_lock = threading.Lock()
_context: Any = None


def _gx_context():
    """One ephemeral GX context per process (creating one, and importing GX, takes seconds)."""
    global _context
    if _context is None:
        import great_expectations as gx
        from great_expectations.data_context.types.base import ProgressBarsConfig

        context = gx.get_context(mode="ephemeral")
        context.variables.progress_bars = ProgressBarsConfig(globally=False)
        context.data_sources.add_pandas("billing_warehouse")
        _context = context
    return _context


def _batch(context, suite: str, frame):
    source = context.data_sources.get("billing_warehouse")
    try:
        asset = source.get_asset(suite)
    except LookupError:
        asset = source.add_dataframe_asset(suite)
    try:
        definition = asset.get_batch_definition("period")
    except (KeyError, LookupError):
        definition = asset.add_batch_definition_whole_dataframe("period")
    return definition.get_batch(batch_parameters={"dataframe": frame})


def _to_pandas(frame: pl.DataFrame):
    """Decimals stay `Decimal` objects, nullable integers and booleans stay integers and booleans."""
    import pandas as pd
    import pyarrow as pa

    mapping = {pa.int64(): pd.Int64Dtype(), pa.int32(): pd.Int64Dtype(), pa.bool_(): pd.BooleanDtype()}
    return frame.to_arrow().to_pandas(types_mapper=mapping.get).reset_index(drop=True)


def _text(value: Any) -> Any:
    """A value as JSON shows it: decimals as exact strings, times in ISO form."""
    if value is None:
        return None
    if isinstance(value, Decimal):
        return f"{value:f}"
    if isinstance(value, datetime | date):
        return value.isoformat()
    if isinstance(value, dict):
        return {str(k): _text(v) for k, v in value.items()}
    if isinstance(value, list | tuple | set):
        return [_text(v) for v in value]
    if isinstance(value, str | int | float | bool):
        return value
    try:
        import pandas as pd

        if value is pd.NA or value is pd.NaT:
            return None
        if isinstance(value, pd.Timestamp):
            return value.isoformat()
    except ImportError:  # pragma: no cover
        pass
    if hasattr(value, "item"):  # numpy scalar
        return _text(value.item())
    return str(value)


def _label(config) -> str:
    """expect_column_values_to_be_between(column=quantity, min_value=0.0)."""
    kwargs = {k: v for k, v in config.kwargs.items() if k not in ("batch_id", "value_set", "result_format")}
    if "value_set" in config.kwargs:
        values = list(config.kwargs["value_set"])
        kwargs["value_set"] = values if len(values) <= 10 else f"[{len(values)} values]"
    return f"{config.type}({', '.join(f'{k}={v}' for k, v in kwargs.items())})"


@dataclass
class SuiteResult:
    """One suite's validation of one period: what failed, with the rows at fault."""

    suite: str
    table: str
    period: str
    success: bool
    rows: int
    evaluated: int
    failures: list[dict] = field(default_factory=list)
    path: Path | None = None  # the validation result's JSON, once written
    html_path: Path | None = None  # its Data Docs page (HTML), once written
    gx_result: Any = None  # great_expectations ExpectationSuiteValidationResult

    @property
    def failed_expectations(self) -> list[str]:
        return [f["expectation"] for f in self.failures]


def _failure(suite: Suite, res, rows: pl.DataFrame) -> dict:
    config = res.expectation_config
    result = res.result or {}
    column = config.kwargs.get("column")
    columns = [c for c in (column, config.kwargs.get("column_A"), config.kwargs.get("column_B"),
                           *(config.kwargs.get("column_list") or [])) if c]
    failure = {"expectation": _label(config), "type": config.type, "columns": columns,
               "unexpected_count": result.get("unexpected_count"),
               "observed_value": _text(result.get("observed_value")), "unexpected_values": [], "rows": []}
    if res.exception_info and res.exception_info.get("raised_exception"):
        failure["error"] = res.exception_info.get("exception_message")
    indices = [i for i in (result.get("partial_unexpected_index_list") or result.get("unexpected_index_list") or [])
               if isinstance(i, int)]
    if indices:
        shown = [c for c in (*suite.keys, *columns) if c in rows.columns]
        shown = list(dict.fromkeys(shown))
        picked = rows[indices[:FINDING_ROWS]].select(shown)
        failure["rows"] = [_text(r) for r in picked.iter_rows(named=True)]
        if column and column in rows.columns:
            failure["unexpected_values"] = _text(rows[indices[:SAMPLE_ROWS]][column].to_list())
    elif result.get("partial_unexpected_list"):
        failure["unexpected_values"] = _text(result["partial_unexpected_list"][:SAMPLE_ROWS])
    return failure


def validate_frame(suite_name: str, frame: pl.DataFrame, period: Period,
                   frames: dict[str, pl.DataFrame] | None = None) -> SuiteResult:
    """Validate one suite on rows already read (what `validate` does for each suite)."""
    import great_expectations as gx

    suite = SUITES[suite_name]
    frames = {**(frames or {}), suite_name: frame}
    with _lock:
        context = _gx_context()
        expectation_suite = gx.ExpectationSuite(name=suite_name, expectations=suite.expectations(period, frames))
        batch = _batch(context, suite_name, _to_pandas(frame))
        # SUMMARY, not COMPLETE: at most FINDING_ROWS unexpected values and row indices per expectation,
        # so a broken key on a big month does not put every row in memory and in the JSON file.
        result = batch.validate(expectation_suite, result_format={
            "result_format": "SUMMARY", "partial_unexpected_count": FINDING_ROWS})
    failures = [_failure(suite, res, frame) for res in result.results if not res.success]
    return SuiteResult(suite=suite_name, table=suite.table, period=period.key, success=bool(result.success),
                       rows=frame.height, evaluated=len(result.results), failures=failures, gx_result=result)


def validate(tx: Tx, period: Period, suites: Iterable[str]) -> list[SuiteResult]:
    """Read each suite's rows of the period in this transaction, then validate them."""
    frames: dict[str, pl.DataFrame] = {}
    names = list(suites)
    # Lines are checked against the invoices, tiers against the lines: read those too.
    needed = {"fct_invoice_lines": ["fct_invoices"], "fct_invoice_line_tiers": ["fct_invoice_lines"]}
    for name in names:
        for dep in needed.get(name, []):
            if dep not in frames:
                frames[dep] = SUITES[dep].load(tx, period)
        if name not in frames:
            frames[name] = SUITES[name].load(tx, period)
    return [validate_frame(name, frames[name], period, frames) for name in names]


def _safe(part: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]", "_", part) or "_"


def validations_dir(home: Path, period_key: str, run_id: str) -> Path:
    return Path(home) / "quality" / "validations" / _safe(period_key) / _safe(run_id)


def write_result(result: SuiteResult, home: Path, run_id: str) -> Path:
    """Write the GX validation result as JSON: <home>/quality/validations/<period>/<run_id>/<suite>.json.

    The file is Great Expectations' own validation-result document; its `meta` also holds the
    period, run id, table and each failed expectation with the rows at fault. Decimals are written
    as exact strings (GX itself would turn them into floats)."""
    gx_result = result.gx_result
    for res in gx_result.results:
        res.result = _text(res.result)
    gx_result.meta = {**_text(dict(gx_result.meta or {})), "billing": {
        "suite": result.suite, "table": result.table, "period": result.period, "run_id": run_id,
        "rows_validated": result.rows, "failures": result.failures}}
    path = validations_dir(home, result.period, run_id) / f"{_safe(result.suite)}.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(gx_result.to_json_dict(), indent=2, default=str), encoding="utf-8")
    result.path = path
    result.html_path = _write_html(gx_result, path.with_suffix(".html"))
    return path


_EXTERNAL = re.compile(r"<(script|link|img)\b[^>]*(?:src|href)=[\"']https?://[^>]*>(?:\s*</script>)?", re.I)


def _write_html(gx_result, path: Path) -> Path | None:
    """GX's Data Docs page for one validation result, rendered offline. The tags that would load
    scripts, styles and images from the internet are removed: the page is plain but never calls out."""
    try:
        from great_expectations.render.renderer import ValidationResultsPageRenderer
        from great_expectations.render.view import DefaultJinjaPageView

        html = DefaultJinjaPageView().render(ValidationResultsPageRenderer().render(gx_result))
    except Exception:  # the JSON is the record; a page that cannot be rendered is not a failed check
        logger.warning("could not render the Data Docs page %s", path, exc_info=True)
        return None
    path.write_text(_EXTERNAL.sub("", html), encoding="utf-8")
    return path


def run_suites(warehouse: Warehouse, period: Period, suites: Iterable[str], home: Path,
               run_id: str | None = None) -> list[SuiteResult]:
    """Validate `suites` on the period and keep each result's JSON under `home`."""
    run_id = run_id or uuid.uuid4().hex
    with warehouse.transaction() as tx:
        results = validate(tx, period, suites)
    for result in results:
        write_result(result, home, run_id)
    return results


# --- as a quality check ----------------------------------------------------------------------------

def summary(results: list[SuiteResult]) -> str:
    failed = [(r, f) for r in results for f in r.failures]
    rows = sum(r.rows for r in results)
    if not failed:
        return (f"{sum(r.evaluated for r in results)} expectation(s) met on {rows} row(s) "
                f"({', '.join(r.suite for r in results)})")
    return f"{len(failed)} expectation(s) failed: " + "; ".join(
        f"{r.suite}: {f['expectation']} ({f['unexpected_count'] if f['unexpected_count'] is not None else '-'} "
        "unexpected)" for r, f in failed[:5])


def findings(results: list[SuiteResult]) -> list[dict]:
    """One finding per row at fault (at most FINDING_ROWS per expectation), or one per failed
    expectation that has no rows (a missing column, a wrong column type)."""
    out = []
    for result in results:
        for failure in result.failures:
            base = {"suite": result.suite, "expectation": failure["expectation"]}
            if not failure["rows"]:
                what = failure.get("error") or f"observed {failure['observed_value']}"
                out.append({**base, "detail": f"{result.suite} ({result.table}): {failure['expectation']} "
                                              f"failed: {what}"})
                continue
            for row in failure["rows"]:
                values = ", ".join(f"{c}={row.get(c)}" for c in failure["columns"] if c in row)
                keys = ", ".join(f"{k}={v}" for k, v in row.items() if k not in failure["columns"])
                out.append({**base, "customer_id": row.get("billing_account_id") or row.get("customer_id"),
                            "line_id": row.get("line_id"), "file_id": row.get("file_id"),
                            "detail": f"{result.suite} ({result.table}): {failure['expectation']} failed "
                                      f"for {values} ({keys})"})
    return out


@dataclass
class ExpectationCheck:
    """One check made of suites: its outcome (as the other quality checks) and each suite's result."""

    outcome: CheckOutcome
    results: list[SuiteResult]


def check_outcome(name: str, results: list[SuiteResult]) -> CheckOutcome:
    """A failed expectation blocks finalization, like the other error checks."""
    return CheckOutcome(name, all(r.success for r in results), True, summary(results), findings(results))


def run_checks(warehouse: Warehouse, period: Period, home: Path, run_id: str | None = None,
               checks: Iterable[str] = tuple(CHECK_SUITES)) -> list[ExpectationCheck]:
    """Run the suites of each check in `checks` on the period, keep each suite's result (JSON and HTML)
    under <home>/quality/validations/<period>/<run_id>/, and replace each check's rows of the period
    in marts.quality_findings with its findings."""
    run_id = run_id or uuid.uuid4().hex
    done = []
    for name in checks:
        results = run_suites(warehouse, period, CHECK_SUITES[name], home, run_id)
        done.append(ExpectationCheck(check_outcome(name, results), results))
    write_findings(warehouse, [c.outcome for c in done], period.key, run_id)
    return done
