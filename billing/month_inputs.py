"""What a month was rated from, so a rerun with nothing new can say so instead of rating again.

A month's invoices and check results depend on more than its own events; its *inputs* are:

- `code`: the dbt project (models, macros, tests, dbt_project.yml, profiles.yml), the Python that
  rates, checks and records (packages in CODE_PACKAGES) and the versions of dbt, DuckDB and Polars;
- `settings`: everything in Settings (engine, look-back, anomaly_factor, paths...) and the dbt vars
  of the period;
- `catalog`: the content of every `raw.catalog_*` table (dbt prices with them, the checks read them);
- `ingest`: every landed file's id, status and row counts. Files are content-addressed and
  raw.events / quarantine / duplicates are only ever appended to by loading a file, so this covers
  the month's events, the events of the issued months its corrections re-rate and of the trailing
  months the anomaly check reads, and rejected files. A new file for *any* month counts as a change
  (cheap and never wrong; the month is rated again);
- `ledger`: the action log's head (every manual charge, override, issue, void and credit note
  appends an entry) and the row count of each ledger table dbt reads (append-only tables);
- `earlier_periods`: when an earlier period has an issued invoice, the latest rating run of each
  earlier period (int_invoice_corrections reads their rated lines).

After a month is rated and checked, `record_inputs` stores these beside the rating run
(`ledger.rating_inputs`, with each check's outcome). `compare` computes them again and answers
"unchanged" only when every part is equal, the period's latest rating run is the one they were
recorded with, and the marts still hold that run's invoices (a full refresh, a run of another path
in between: rated again). Anything it cannot read counts as a change.
"""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass, field
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
DBT_PROJECT_DIR = ROOT / "dbt_project"
# Python whose change may change what a run rates, checks or records (normalize and collectors
# only shape what is loaded, which `ingest` covers).
CODE_PACKAGES = ("billing", "core", "quality", "warehouse", "ledger", "catalog")
DBT_SKIPPED = {"target", "logs", "dbt_packages", "__pycache__"}
LIBRARIES = ("dbt-core", "dbt-duckdb", "dbt-postgres", "dbt-spark", "duckdb", "polars")
# Ledger tables dbt reads (append-only: a count sees every insert; the action log sees the rest).
LEDGER_TABLES = ("manual_lines", "invoices", "invoice_lines", "invoice_line_tiers", "voids", "credit_notes",
                 "credit_note_lines", "credit_balance_entries")
TABLE = "ledger.rating_inputs"


def _sha(value: Any) -> str:
    text = value if isinstance(value, str) else json.dumps(value, sort_keys=True, default=str, separators=(",", ":"))
    return hashlib.sha256(text.encode()).hexdigest()


# --------------------------------------------------------------------------------------------------
# the parts


def _files_digest(files: list[Path], base: Path) -> str:
    digest = hashlib.sha256()
    for path in sorted(files):
        digest.update(str(path.relative_to(base)).encode() + b"\0")
        digest.update(hashlib.sha256(path.read_bytes()).digest())
    return digest.hexdigest()


def _dbt_files(project: Path) -> list[Path]:
    found = []
    for folder, dirs, names in os.walk(project):
        dirs[:] = [d for d in dirs if d not in DBT_SKIPPED and not d.startswith(".")]
        found += [Path(folder) / n for n in names if not n.startswith(".") and not n.endswith(".duckdb")]
    return found


def _python_files() -> list[Path]:
    found = []
    for package in CODE_PACKAGES:
        folder = ROOT / package
        if folder.is_dir():
            found += [p for p in folder.rglob("*.py") if "__pycache__" not in p.parts]
    return found


def _versions() -> dict[str, str | None]:
    from importlib import metadata

    found: dict[str, str | None] = {}
    for name in LIBRARIES:
        try:
            found[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            found[name] = None
    return found


def code_part() -> str:
    return _sha({"dbt": _files_digest(_dbt_files(DBT_PROJECT_DIR), DBT_PROJECT_DIR),
                 "python": _files_digest(_python_files(), ROOT), "libraries": _versions()})


def settings_part(settings, period) -> str:
    lookback = settings.lifecycle.lookback_periods
    # the settings' repr holds every setting, anomaly_factor included
    return _sha({"settings": repr(settings), "dbt_vars": period.dbt_vars(lookback)})


def _table_rows(tx, table: str) -> list[str]:
    return sorted(json.dumps(list(row), default=str) for row in tx.fetchall(f"SELECT * FROM {table}"))


def catalog_part(tx) -> str:
    """Every row of the catalog tables dbt prices with and the checks read (each stamped with its file's
    sha256 by catalog.land): an edit by hand is seen too."""
    from warehouse.schema import CATALOG_TABLES

    return _sha({t: _sha(_table_rows(tx, f"raw.{t}")) for t in CATALOG_TABLES})


def ingest_part(tx) -> str:
    rows = tx.fetchall("SELECT file_id, status, rows_received, rows_loaded, rows_quarantined, rows_duplicate, error "
                       "FROM raw.landed_files ORDER BY file_id")
    return _sha([list(row) for row in rows])


def ledger_part(tx) -> str:
    head = tx.fetchall("SELECT seq, entry_hash FROM ledger.actions ORDER BY seq DESC LIMIT 1")
    counts = tx.fetchall(" UNION ALL ".join(f"SELECT '{t}', COUNT(*) FROM ledger.{t}" for t in LEDGER_TABLES))
    return _sha({"head": [list(r) for r in head], "counts": sorted([t, int(n)] for t, n in counts)})


def earlier_periods_part(tx, period_key: str) -> str:
    issued_before = tx.fetchall("SELECT COUNT(*) FROM ledger.invoices WHERE period < ?", [period_key])[0][0]
    if not issued_before:
        return _sha("no invoice issued before the period")
    runs = tx.fetchall(
        "SELECT r.period, r.run_id FROM ledger.rating_runs r WHERE r.period < ? AND r.finished_at = "
        "(SELECT MAX(s.finished_at) FROM ledger.rating_runs s WHERE s.period = r.period) ORDER BY r.period, r.run_id",
        [period_key])
    return _sha([list(r) for r in runs])


# --------------------------------------------------------------------------------------------------
# the API


@dataclass(frozen=True)
class MonthInputs:
    """The digest of each input of a period (names as in the module's docstring)."""

    period: str
    parts: dict[str, str]

    @property
    def sha256(self) -> str:
        return _sha(self.parts)


@dataclass
class StoredOutcome:
    """A check's outcome as the run that recorded the inputs saw it (the shape of quality.checks.CheckOutcome)."""

    name: str
    passed: bool
    blocking: bool
    summary: str
    findings: list[dict] = field(default_factory=list)


@dataclass(frozen=True)
class RatedInputs:
    """What `record_inputs` stored for a period's rating run."""

    run_id: str
    period: str
    sha256: str
    parts: dict[str, str]
    outcomes: list[dict]
    recorded_at: datetime


def inputs_of(settings, warehouse, period) -> MonthInputs:
    """The inputs of `period` as they are now (a few small queries and a hash of the code: ~0.1 s)."""
    with warehouse.transaction() as tx:
        parts = {"catalog": catalog_part(tx), "ingest": ingest_part(tx),
                 "ledger": ledger_part(tx), "earlier_periods": earlier_periods_part(tx, period.key)}
    parts |= {"code": code_part(), "settings": settings_part(settings, period)}
    return MonthInputs(period.key, dict(sorted(parts.items())))


def ensure_table(tx) -> None:
    """ledger.rating_inputs where missing (declared in ledger/schema.py, created by warehouse/schema.py)."""
    from ledger.schema import LEDGER_TABLES as DECLARED
    from warehouse.schema import create

    create(tx, [t for t in DECLARED if t.qualified == TABLE])


def record_inputs(tx, inputs: MonthInputs, run_id: str, outcomes) -> None:
    """Store `inputs` (computed *before* rating, so a change during the run is seen next time) with the
    rating run `run_id` (ledger.rating_runs) and its checks' outcomes; call it in the transaction that
    records the rating run."""
    ensure_table(tx)
    kept = [{"name": o.name, "passed": bool(o.passed), "blocking": bool(o.blocking), "summary": str(o.summary)}
            for o in outcomes]
    tx.execute(f"INSERT INTO {TABLE} (run_id, period, inputs_sha256, parts, outcomes, recorded_at) "
               "VALUES (?, ?, ?, ?, ?, ?)",
               [run_id, inputs.period, inputs.sha256, json.dumps(inputs.parts, sort_keys=True), json.dumps(kept),
                datetime.now(UTC)])


def last_rated_inputs(tx, period_key: str) -> RatedInputs | None:
    """The inputs recorded with the period's latest rating run, if that run recorded any."""
    from ledger.drafts import latest_rating_run

    latest = latest_rating_run(tx, period_key)
    return None if latest is None else _recorded(tx, latest.run_id)


def _recorded(tx, run_id: str) -> RatedInputs | None:
    rows = tx.fetchall(f"SELECT run_id, period, inputs_sha256, parts, outcomes, recorded_at FROM {TABLE} "
                       "WHERE run_id = ?", [run_id])
    if not rows:
        return None
    run_id, period, sha, parts, outcomes, recorded_at = rows[0]
    return RatedInputs(run_id, period, sha, json.loads(parts), json.loads(outcomes), recorded_at)


def _marts_hold(tx, period_key: str, drafts: dict[str, dict]) -> bool:
    """The marts still hold the invoices a rating run recorded (`drafts`: not emptied or rebuilt since)."""
    count, total = tx.fetchall("SELECT COUNT(*), SUM(total) FROM marts.fct_invoices WHERE period = ?",
                               [period_key])[0]
    recorded = [Decimal(d["total"]) for d in drafts.values()]
    return int(count) == len(recorded) and Decimal(total or 0) == sum(recorded, Decimal(0))


@dataclass
class Comparison:
    """`changed` names the parts that differ ([] = nothing changed); `previous` is what was recorded."""

    inputs: MonthInputs
    previous: RatedInputs | None
    changed: list[str]

    @property
    def unchanged(self) -> bool:
        return self.previous is not None and not self.changed

    def describe(self) -> str:
        if self.previous is None:
            return "no inputs recorded for the period's latest rating run"
        if not self.changed:
            return (f"nothing changed since rating run {self.previous.run_id} "
                    f"({self.previous.recorded_at:%Y-%m-%d %H:%M:%S %Z})")
        return "changed since the last rating run: " + ", ".join(self.changed)


def compare(settings, warehouse, period) -> Comparison:
    """The period's inputs now, against those recorded with its latest rating run."""
    from ledger.drafts import latest_rating_run

    inputs = inputs_of(settings, warehouse, period)
    try:
        with warehouse.transaction() as tx:
            latest = latest_rating_run(tx, period.key)
            previous = None if latest is None else _recorded(tx, latest.run_id)
            held = previous is not None and _marts_hold(tx, period.key, latest.drafts)
    except Exception:  # a table missing (a new or older warehouse, marts never built): rate
        previous = None
    if previous is None:
        return Comparison(inputs, None, ["(nothing recorded)"])
    changed = sorted(k for k in inputs.parts.keys() | previous.parts.keys()
                     if inputs.parts.get(k) != previous.parts.get(k))
    if not held:
        changed.append("marts (emptied or rebuilt since)")
    return Comparison(inputs, previous, changed)


def stored_outcomes(warehouse, previous: RatedInputs) -> list[StoredOutcome]:
    """The checks of the run that recorded `previous`, with their findings from marts.quality_findings."""
    with warehouse.transaction() as tx:
        rows = tx.fetchall("SELECT check_name, customer_id, line_id, file_id, detail FROM marts.quality_findings "
                           "WHERE period = ? ORDER BY check_name, customer_id, line_id, file_id, detail",
                           [previous.period])
    findings: dict[str, list[dict]] = {}
    for check, customer, line, file_id, detail in rows:
        findings.setdefault(check, []).append({"customer_id": customer, "line_id": line, "file_id": file_id,
                                               "detail": detail})
    return [StoredOutcome(o["name"], o["passed"], o["blocking"], o["summary"],
                          [] if o["passed"] else findings.get(o["name"], [])) for o in previous.outcomes]
