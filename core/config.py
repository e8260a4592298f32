"""Where things are: one config, from a YAML file and/or the environment.

Order of precedence: environment variables > the config file > defaults. The config file is
`$BILLING_CONFIG` if set, else `./billing.yaml` if it exists. Relative paths in the file are read
from the file's folder; defaults live under `$BILLING_HOME` (default `./data`). See docs/config.md.

Secrets are never written in the file: the PostgreSQL DSN is read from the environment variable
the file names (`warehouse.dsn_env`, default BILLING_POSTGRES_DSN).

Engines: `duckdb` (default) and `postgres` hold the warehouse and rate in it; `spark` rates on Apache
Spark (dbt-spark) with the DuckDB file as the warehouse of record; its Parquet copies of the raw
tables and its own tables live under `spark_dir` (docs/scale.md).
"""

from __future__ import annotations

import difflib
import os
from dataclasses import dataclass, field
from decimal import Decimal, InvalidOperation
from pathlib import Path

import yaml

ENGINES = ("duckdb", "postgres", "spark")


@dataclass(frozen=True)
class ApprovalPolicy:
    """Who must approve a draft before it is issued (docs/lifecycle.md)."""

    finance_approvals: int = 1            # distinct finance people
    csm_when_required: bool = True        # the customer's CSM too, when the catalog says require_csm_approval
    two_approvers_from: dict[str, Decimal] = field(default_factory=dict)  # currency -> total needing 2 people
    no_approval_customers: tuple[str, ...] = ()  # billing accounts issued without a person (auto-issue job)


@dataclass(frozen=True)
class Lifecycle:
    """Settings of the invoice lifecycle: people, policy, numbers, corrections, documents, webhooks."""

    people: Path | None = None            # the people file (id, name, email, role)
    approval: ApprovalPolicy = field(default_factory=ApprovalPolicy)
    invoice_format: str = "INV-{year}-{number:06d}"
    credit_note_format: str = "CN-{year}-{number:06d}"
    lookback_periods: int = 3             # how many issued periods back a late change is still adjusted
    seller: dict[str, str] = field(default_factory=dict)  # name, address, tax_id, email on documents
    documents: Path | None = None         # where rendered PDFs are kept (default <home>/documents)
    webhooks: tuple[dict, ...] = ()       # endpoints: name, url, secret_env, [timeout_seconds, max_attempts]


@dataclass(frozen=True)
class Settings:
    home: Path
    catalog: Path
    inbox: Path
    landing: Path
    duckdb_path: Path
    engine: str = "duckdb"  # duckdb | postgres | spark
    dsn_env: str = "BILLING_POSTGRES_DSN"
    sources: Path | None = None
    config_file: Path | None = None
    lifecycle: Lifecycle = field(default_factory=Lifecycle)
    spark_dir: Path | None = None  # engine spark: the raw Parquet export and Spark's tables
    anomaly_factor: Decimal = Decimal("10")  # the anomalies check: usage this many times off its trailing average


def load_settings(config_file: str | Path | None = None, env: dict[str, str] | None = None) -> Settings:
    env = dict(os.environ if env is None else env)
    path = Path(config_file) if config_file else Path(env["BILLING_CONFIG"]) if env.get("BILLING_CONFIG") else None
    if path is None and Path("billing.yaml").is_file():
        path = Path("billing.yaml")
    doc: dict = {}
    if path is not None:
        if not path.is_file():
            raise FileNotFoundError(f"config file {path} not found (BILLING_CONFIG or --config)")
        doc = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
        if not isinstance(doc, dict):
            raise ValueError(f"{path}: must be a YAML mapping (see docs/config.md)")
        _refuse_unknown_keys(doc, path)
    return _settings(doc, env, path)


class _ReadKeys(dict):
    """A mapping of the config file that notes the keys the loader looks up (and wraps the mappings
    inside it the same way), so that the keys it never reads can be refused afterwards."""

    def __init__(self, data: dict, where: str):
        super().__init__(data)
        self.where = where
        self.read: set = set()
        self.taken_whole = False  # iterated: its keys are data (currencies, seller fields), not settings

    def _wrapped(self, key, value):
        if isinstance(value, dict) and not isinstance(value, _ReadKeys):
            value = _ReadKeys(value, f"{self.where}.{key}" if self.where else str(key))
            super().__setitem__(key, value)
        return value

    def get(self, key, default=None):
        self.read.add(key)
        return self._wrapped(key, super().__getitem__(key)) if super().__contains__(key) else default

    def __getitem__(self, key):
        self.read.add(key)
        return self._wrapped(key, super().__getitem__(key))

    def __contains__(self, key) -> bool:
        self.read.add(key)
        return super().__contains__(key)

    def items(self):
        self.taken_whole = True
        return super().items()

    def keys(self):
        self.taken_whole = True
        return super().keys()

    def values(self):
        self.taken_whole = True
        return super().values()

    def __iter__(self):
        self.taken_whole = True
        return super().__iter__()

    def unknown(self) -> tuple[str, str, list[str]] | None:
        """(where, key, known keys) of the first key the loader did not read, here or inside."""
        if self.read and not self.taken_whole:
            for key in dict.keys(self):
                if key not in self.read:
                    return self.where, key, sorted(str(k) for k in self.read)
        for value in dict.values(self):
            if isinstance(value, _ReadKeys) and (found := value.unknown()) is not None:
                return found
        return None


def _refuse_unknown_keys(doc: dict, path: Path) -> None:
    """Refuse a key of the file that the loader does not read, naming the nearest one it does.

    The known keys are those `_settings` looks up, recorded on a dry run with no environment (so that
    no variable short-circuits the look-up of the key it overrides): a key the loader reads is known
    without being listed a second time here."""
    recorded = _ReadKeys(doc, "")
    _settings(recorded, {}, path)
    found = recorded.unknown()
    if found is not None:
        where, key, known = found
        nearest = difflib.get_close_matches(str(key), known, n=1, cutoff=0)
        raise ValueError(f"{path}: unknown key '{key}' {f'in {where}' if where else 'at the top level'}; the "
                         f"nearest known key is '{nearest[0]}' (known keys there: {', '.join(known)}; "
                         "docs/config.md)")


def _settings(doc: dict, env: dict[str, str], path: Path | None) -> Settings:
    """Settings from the file's mapping (`doc`, empty without a file) and the environment."""
    base = path.parent.resolve() if path else Path.cwd()
    home = Path(env.get("BILLING_HOME") or doc.get("home") or "data")
    home = home if home.is_absolute() else base / home
    warehouse = doc.get("warehouse") or {}

    def pick(env_key: str, value, default: Path) -> Path:
        chosen = env.get(env_key) or value
        if chosen is None:
            return default
        chosen = Path(chosen)
        return chosen if chosen.is_absolute() else (Path.cwd() if env.get(env_key) else base) / chosen

    engine = env.get("BILLING_ENGINE") or warehouse.get("engine") or "duckdb"
    if engine not in ENGINES:
        raise ValueError(f"warehouse engine {engine!r} is not one of {', '.join(ENGINES)}")
    sources = env.get("BILLING_SOURCES") or doc.get("sources")
    factor = env.get("BILLING_ANOMALY_FACTOR") or doc.get("anomaly_factor")
    return Settings(
        home=home,
        catalog=pick("BILLING_CATALOG", doc.get("catalog"), home / "catalog.yaml"),
        inbox=pick("BILLING_INBOX", doc.get("inbox"), home / "inbox"),
        landing=pick("BILLING_LANDING", doc.get("landing"), home / "landing"),
        duckdb_path=pick("BILLING_DUCKDB_PATH", warehouse.get("path"), home / "warehouse.duckdb"),
        engine=engine,
        dsn_env=warehouse.get("dsn_env") or "BILLING_POSTGRES_DSN",
        sources=pick("BILLING_SOURCES", sources, home / "sources.yaml") if sources else None,
        config_file=path,
        lifecycle=_lifecycle(doc, env, base, home, pick, path),
        spark_dir=pick("BILLING_SPARK_DIR", warehouse.get("spark_dir"), home / "spark"),
        anomaly_factor=Settings.anomaly_factor if factor is None else _factor(factor, path),
    )


def _factor(value, path: Path | None) -> Decimal:
    """anomaly_factor (or BILLING_ANOMALY_FACTOR): a decimal number above 1."""
    try:
        factor = Decimal(str(value).strip())
    except InvalidOperation:
        factor = None
    if factor is None or not factor.is_finite() or factor <= 1:
        raise ValueError(f"{path or 'the configuration'}: anomaly_factor (or BILLING_ANOMALY_FACTOR) = {value!r} must "
                         "be a number above 1, e.g. 10 (docs/config.md)")
    return factor


def _lifecycle(doc: dict, env: dict[str, str], base: Path, home: Path, pick, path: Path | None) -> Lifecycle:
    """The lifecycle part of the config (`people`, `approval`, `numbering`, `lookback_periods`, `seller`,
    `documents`, `webhooks`); every key optional."""
    where = path or "the configuration"
    approval = doc.get("approval") or {}
    if not isinstance(approval, dict):
        raise ValueError(f"{where}: approval must be a mapping (docs/lifecycle.md)")
    thresholds = {}
    for currency, amount in (approval.get("two_approvers_from") or {}).items():
        try:
            thresholds[str(currency)] = Decimal(str(amount))
        except InvalidOperation:
            raise ValueError(f"{where}: approval.two_approvers_from.{currency} = {amount!r} is not an amount") from None
    policy = ApprovalPolicy(
        finance_approvals=int(approval.get("finance_approvals", 1)),
        csm_when_required=bool(approval.get("csm_when_required", True)),
        two_approvers_from=thresholds,
        no_approval_customers=tuple(str(c) for c in approval.get("no_approval_customers") or ()),
    )
    numbering = doc.get("numbering") or {}
    people = env.get("BILLING_PEOPLE") or doc.get("people")
    default_people = home / "people.yaml"
    webhooks = doc.get("webhooks") or []
    if not isinstance(webhooks, list):
        raise ValueError(f"{where}: webhooks must be a list of endpoints (docs/lifecycle.md)")
    lookback = int(doc.get("lookback_periods", 3))
    if lookback < 0:
        raise ValueError(f"{where}: lookback_periods must be 0 or more, not {lookback}")
    return Lifecycle(
        people=pick("BILLING_PEOPLE", people, default_people) if people else
        (default_people if default_people.is_file() else None),
        approval=policy,
        invoice_format=str(numbering.get("invoice", "INV-{year}-{number:06d}")),
        credit_note_format=str(numbering.get("credit_note", "CN-{year}-{number:06d}")),
        lookback_periods=lookback,
        seller={str(k): str(v) for k, v in (doc.get("seller") or {}).items()},
        documents=pick("BILLING_DOCUMENTS", doc.get("documents"), home / "documents"),
        webhooks=tuple(dict(w) for w in webhooks),
    )
