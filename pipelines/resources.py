"""The settings as Dagster resources, built once from `Settings` when the code location loads.

`build_defs(settings)` turns the settings it is given into one `BillingResource` (key `billing`): the
paths, the warehouse and dbt, each a `ConfigurableResource` the UI shows (Deployment > Resources), and
every other setting (the lifecycle's people, approval policy, numbering, ...) as JSON. Assets, checks
and sensors read `billing.settings()`, never the environment: a run bills with the settings its code
location was built with, and a test hands in its own (`BillingResource.from_settings(settings)`).

The PostgreSQL DSN is no field of these resources: it stays in the environment variable the settings
name (`warehouse.dsn_env`), read when the warehouse is opened (warehouse/store.py), never shown.
"""

from __future__ import annotations

import dataclasses
import json
import types
import typing
from decimal import Decimal
from pathlib import Path
from typing import Any

import dagster as dg

from core.config import Settings
from core.periods import Period
from warehouse.store import Warehouse, open_warehouse

# The fields of Settings that the path and warehouse resources hold; every other one goes to `rest`.
PATH_FIELDS = ("home", "catalog", "inbox", "landing", "sources", "config_file")
WAREHOUSE_FIELDS = ("engine", "duckdb_path", "dsn_env", "spark_dir")


class PathsResource(dg.ConfigurableResource):
    """Where the files are (docs/config.md): BILLING_HOME, the catalog file, the upload inbox, the landing
    zone, the sources file and the config file they came from."""

    home: str
    catalog: str
    inbox: str
    landing: str
    sources: str | None = None
    config_file: str | None = None


class WarehouseResource(dg.ConfigurableResource):
    """The warehouse of record: the DuckDB file, or PostgreSQL through the DSN in the environment variable
    `dsn_env` (read when opened, never stored here); with engine spark, Spark's Parquet under `spark_dir`."""

    engine: str = "duckdb"
    duckdb_path: str
    dsn_env: str = "BILLING_POSTGRES_DSN"
    spark_dir: str | None = None


class DbtResource(dg.ConfigurableResource):
    """dbt, as `billing run` runs it (billing/rating.py): the project, its environment built once from the
    settings, and on engine spark the export to Parquet, dbt on Spark and the copy back."""

    project_dir: str

    def rate(self, settings: Settings, period: Period) -> list[dict]:
        """Rate the period: `runner.rate`, the same call `billing run` makes. Returns dbt's node results."""
        from billing import runner

        return runner.rate(settings, period)


class BillingResource(dg.ConfigurableResource):
    """Every setting of the billing warehouse, resolved once (core/config.py `load_settings`)."""

    paths: PathsResource
    warehouse: WarehouseResource
    dbt: DbtResource
    rest: str = "{}"  # every other setting of core.config.Settings (the lifecycle, ...), as JSON

    @classmethod
    def from_settings(cls, settings: Settings) -> BillingResource:
        from billing.rating import DBT_PROJECT_DIR

        values = {f.name: getattr(settings, f.name) for f in dataclasses.fields(settings)}
        text = {name: None if values[name] is None else str(values[name]) for name in PATH_FIELDS + WAREHOUSE_FIELDS}
        rest = {name: _plain(value) for name, value in values.items() if name not in text}
        return cls(paths=PathsResource(**{name: text[name] for name in PATH_FIELDS}),
                   warehouse=WarehouseResource(**{name: text[name] for name in WAREHOUSE_FIELDS}),
                   dbt=DbtResource(project_dir=str(DBT_PROJECT_DIR)),
                   rest=json.dumps(rest, sort_keys=True))

    def settings(self) -> Settings:
        """The `Settings` these resources were built from (with any field changed in the launchpad)."""
        hints = typing.get_type_hints(Settings)
        given: dict[str, Any] = {name: getattr(self.paths, name) for name in PATH_FIELDS}
        given.update({name: getattr(self.warehouse, name) for name in WAREHOUSE_FIELDS})
        given.update(json.loads(self.rest))
        return Settings(**{name: _typed(hints[name], value) for name, value in given.items()})

    def open_warehouse(self) -> Warehouse:
        return open_warehouse(self.settings())


def _plain(value: Any) -> Any:
    """A settings value as JSON: dataclasses as objects, paths and decimals as text."""
    if dataclasses.is_dataclass(value):
        return {f.name: _plain(getattr(value, f.name)) for f in dataclasses.fields(value)}
    if isinstance(value, Path | Decimal):
        return str(value)
    if isinstance(value, list | tuple):
        return [_plain(item) for item in value]
    if isinstance(value, dict):
        return {str(key): _plain(item) for key, item in value.items()}
    return value


def _typed(hint: Any, value: Any) -> Any:
    """The inverse of `_plain`, led by the field's type hint."""
    if value is None:
        return None
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if origin in (typing.Union, types.UnionType):
        return _typed(next(arg for arg in args if arg is not type(None)), value)
    if dataclasses.is_dataclass(hint):
        inner = typing.get_type_hints(hint)
        return hint(**{name: _typed(inner[name], item) for name, item in value.items()})
    if hint in (Path, Decimal):
        return hint(value)
    if origin is tuple:
        return tuple(_typed(args[0], item) for item in value) if args else tuple(value)
    if origin is dict and args:
        return {_typed(args[0], key): _typed(args[1], item) for key, item in value.items()}
    return value
