"""Where things are: one config, from a YAML file and/or the environment.

Order of precedence: environment variables > the config file > defaults. The config file is
`$BILLING_CONFIG` if set, else `./billing.yaml` if it exists. Relative paths in the file are read
from the file's folder; defaults live under `$BILLING_HOME` (default `./data`). See docs/config.md.

Secrets are never written in the file: the PostgreSQL DSN is read from the environment variable
the file names (`warehouse.dsn_env`, default BILLING_POSTGRES_DSN).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import yaml

from warehouse.store import Warehouse


@dataclass(frozen=True)
class Settings:
    home: Path
    catalog: Path
    inbox: Path
    landing: Path
    duckdb_path: Path
    engine: str = "duckdb"  # duckdb | postgres
    dsn_env: str = "BILLING_POSTGRES_DSN"
    sources: Path | None = None
    config_file: Path | None = None

    def warehouse(self) -> Warehouse:
        if self.engine == "postgres":
            dsn = os.environ.get(self.dsn_env)
            if not dsn:
                raise RuntimeError(
                    f"warehouse engine is postgres but ${self.dsn_env} is not set; "
                    "export it, e.g. postgresql://postgres@127.0.0.1:5432/test"
                )
            return Warehouse(postgres_dsn=dsn)
        return Warehouse(duckdb_path=self.duckdb_path)


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
    if engine not in ("duckdb", "postgres"):
        raise ValueError(f"warehouse engine {engine!r} is not duckdb or postgres")
    sources = env.get("BILLING_SOURCES") or doc.get("sources")
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
    )
