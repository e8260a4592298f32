"""Run the dbt project for one billing period against the configured warehouse.

The period reaches dbt as vars (`Period.dbt_vars`); the warehouse location reaches the profile
through environment variables, never through files in the repository.
"""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from contextlib import contextmanager
from pathlib import Path
from urllib.parse import parse_qs, unquote, urlparse

from core.config import Settings
from core.periods import Period
from warehouse.store import open_warehouse

DBT_PROJECT_DIR = Path(__file__).resolve().parent.parent / "dbt_project"


def dbt_env(settings: Settings) -> dict[str, str]:
    """Environment the dbt profile reads (dbt_project/profiles.yml)."""
    env = {"DBT_PROFILES_DIR": str(DBT_PROJECT_DIR), "DBT_SEND_ANONYMOUS_USAGE_STATS": "false",
           "DO_NOT_TRACK": "1", "BILLING_DBT_TARGET": settings.engine}
    if settings.engine in ("duckdb", "spark"):
        env["BILLING_DUCKDB_PATH"] = str(settings.duckdb_path.resolve())
    else:
        env.update(postgres_env(open_warehouse(settings).postgres_dsn or ""))
    if settings.engine == "spark":
        env["BILLING_SPARK_DIR"] = str(spark_dir(settings))
    return env


def spark_dir(settings: Settings) -> Path:
    """Where Spark's Parquet lives (an absolute path: Spark resolves relative ones elsewhere)."""
    return (settings.spark_dir or settings.home / "spark").resolve()


def postgres_env(dsn: str) -> dict[str, str]:
    """Split a postgresql:// DSN into the variables the profile reads."""
    url = urlparse(dsn)
    if url.scheme not in ("postgres", "postgresql"):
        raise ValueError("the PostgreSQL DSN must look like postgresql://user@host:5432/dbname")
    env = {
        "BILLING_PG_HOST": url.hostname or "127.0.0.1",
        "BILLING_PG_PORT": str(url.port or 5432),
        "BILLING_PG_USER": unquote(url.username or "postgres"),
        "BILLING_PG_PASSWORD": unquote(url.password or ""),
        "BILLING_PG_DBNAME": (url.path or "/postgres").lstrip("/") or "postgres",
        # libpq variables, read by dbt's connections: sessions in UTC, like warehouse/store.py's
        "PGTZ": "UTC",
    }
    sslmode = parse_qs(url.query).get("sslmode")
    if sslmode:  # ?sslmode=require in the DSN holds for dbt too
        env["PGSSLMODE"] = sslmode[-1]
    return env


def dbt_args(command: str, period: Period, extra: Sequence[str] = (), lookback_periods: int | None = None,
             view_mark: str | None = None) -> list[str]:
    """Arguments for one dbt invocation over one period (pure; tested); `view_mark`: what the views built
    say of the project that built them (macros/views.sql)."""
    variables = period.dbt_vars(lookback_periods) | ({"billing_view_mark": view_mark} if view_mark else {})
    return [command, "--project-dir", str(DBT_PROJECT_DIR), "--vars", json.dumps(variables), *extra]


@contextmanager
def environment(values: dict[str, str]):
    """Set these environment variables for the block, then put back what was there."""
    saved = {k: os.environ.get(k) for k in values}
    os.environ.update(values)
    try:
        yield
    finally:
        for key, old in saved.items():
            if old is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = old


class RatingFailed(RuntimeError):
    pass


def run_dbt(settings: Settings, period: Period, command: str = "build", extra: Sequence[str] = ()) -> list[dict]:
    """Run `dbt <command>` for the period in-process; return one dict per node result.

    With the spark engine: export the raw tables to Parquet, build the DuckDB staging views (the
    checks read them), run dbt on Spark, then copy the period's rated rows back (warehouse/spark.py).
    """
    if settings.engine == "spark":
        return run_on_spark(settings, period, command, extra)
    return _invoke(settings, period, command, extra)


# dbt parses the whole project again whenever --vars differ from its last parse (a new month, a new
# look-back), about as long as running a month's nodes. The period only matters when a node is compiled
# (at run time, from the invocation's vars), so the parsed project is kept per content of the project,
# dbt version, target and parse-time environment, and handed to dbt (`dbtRunner(manifest=...)`), which
# then skips parsing. It is read from bytes for every invocation: dbt marks the nodes it compiles in
# the manifest object (ephemeral CTEs injected), which a second invocation must not see.
PARSED = "billing-parsed"  # <target path>/billing-parsed/<key>.msgpack: dbt's partial_parse.msgpack, kept
# env_var()s of dbt_project.yml and the models, and the connection's identity: a parse names every
# relation with its database (the PostgreSQL dbname, the DuckDB file's name), so a parse kept for one
# warehouse must never serve another ("Cross-db references not allowed"). Never the password.
_PARSE_ENV = ("BILLING_DBT_TARGET", "BILLING_SPARK_DIR", "BILLING_DUCKDB_PATH",
              "BILLING_PG_HOST", "BILLING_PG_PORT", "BILLING_PG_USER", "BILLING_PG_DBNAME")


def _target_path(extra: Sequence[str]) -> Path:
    if "--target-path" in extra:
        return Path(extra[list(extra).index("--target-path") + 1])
    return Path(os.environ.get("DBT_TARGET_PATH") or DBT_PROJECT_DIR / "target")


def _parse_key() -> str:
    """What a parse depends on: the project's files, dbt's version and the parse-time environment."""
    import hashlib

    from dbt.version import __version__

    from .month_inputs import _dbt_files, _files_digest

    files = _files_digest(_dbt_files(DBT_PROJECT_DIR), DBT_PROJECT_DIR)
    env = [f"{k}={os.environ.get(k, '')}" for k in _PARSE_ENV]
    return hashlib.sha256("\n".join([files, __version__, *env]).encode()).hexdigest()[:32]


def _parsed_manifest(path: Path):
    """The manifest kept at `path`, ready for dbtRunner(manifest=...); None when absent or unreadable."""
    try:
        from dbt.contracts.graph.manifest import Manifest
        from dbt.parser.manifest import extended_mashumuro_decoder

        manifest = Manifest.from_msgpack(path.read_bytes(), decoder=extended_mashumuro_decoder)
        manifest.build_flat_graph()  # the `graph` context variable (macros/spark.sql reads it)
        return manifest
    except Exception:  # absent, or written by another dbt version: dbt parses
        return None


def _keep_parse(target: Path, key: str) -> None:
    """Keep the partial-parse file dbt just wrote under `key` (if the project did not change meanwhile)."""
    written = target / "partial_parse.msgpack"
    if not written.is_file() or _parse_key() != key:
        return
    kept = target / PARSED / f"{key}.msgpack"
    kept.parent.mkdir(parents=True, exist_ok=True)
    for old in kept.parent.glob("*.msgpack"):  # one parse kept per target folder
        old.unlink(missing_ok=True)
    partial = kept.with_suffix(f".{os.getpid()}.partial")  # another process may keep the same parse
    partial.write_bytes(written.read_bytes())
    partial.replace(kept)


def keep_parse(settings: Settings, period: Period) -> bool:
    """Parse the project and keep the parse (what the first run after a change of the project does on
    its way); False when a kept parse was already there. The benchmark times it apart."""
    from dbt.cli.main import dbtRunner

    with environment(dbt_env(settings)):
        key, target = _parse_key(), _target_path(())
        if _parsed_manifest(target / PARSED / f"{key}.msgpack") is not None:
            return False
        result = dbtRunner().invoke(dbt_args("parse", period, ["--quiet"], settings.lifecycle.lookback_periods))
        if not result.success:
            raise RatingFailed(f"dbt parse failed: {result.exception}")
        _keep_parse(target, key)
    return True


# A view's SQL only changes with the project, yet dbt recreates every view at every build (16 of a month's
# 62 nodes, about 1 s). Each view built through here carries this mark (macros/views.sql); when all the
# project's views carry the current one, the build uses the selector VIEWS_KEPT: every model and data test
# but the views (their tests still run). A view missing, or built by other code or by hand: all recreated.
# Only for the month's own build (no arguments of the caller's, such as a selection of its own).
VIEW_MARK = "built by dbt project {key}"
VIEWS_KEPT = "billing_month_views_kept"


def _views_marked(settings: Settings, manifest, mark: str) -> bool:
    """Every view of the project is in the warehouse and carries `mark` (DuckDB and PostgreSQL)."""
    views = {(node.schema, node.alias) for node in manifest.nodes.values()
             if node.resource_type == "model" and node.config.enabled and node.config.materialized == "view"}
    if not views or settings.engine not in ("duckdb", "postgres"):
        return False
    # PostgreSQL: the mark ends with the md5 of the definition it was made for (macros/views.sql)
    query = ("SELECT schema_name, view_name, comment = ? FROM duckdb_views() WHERE NOT internal"
             if settings.engine == "duckdb" else
             "SELECT n.nspname, c.relname, obj_description(c.oid, 'pg_class') = ? || ' ' || md5(pg_get_viewdef(c.oid)) "
             "FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace WHERE c.relkind = 'v'")
    try:
        with open_warehouse(settings).transaction() as tx:
            marked = {(schema, name) for schema, name, is_marked in tx.fetchall(query, [mark]) if is_marked}
    except Exception:  # whatever cannot be read is rebuilt
        return False
    return views <= marked


def _invoke(settings: Settings, period: Period, command: str, extra: Sequence[str] = ()) -> list[dict]:
    from dbt.cli.main import dbtRunner

    with environment(dbt_env(settings)):
        key = _parse_key()
        target = _target_path(extra)
        manifest = _parsed_manifest(target / PARSED / f"{key}.msgpack")
        # With the kept parse, target/manifest.json (what Dagster reads) is the parse's already: dbt would
        # write it again, with the nodes it compiled, for ~0.5 s. Only run_results.json is written (below).
        quiet = ["--quiet", "--no-write-json"] if manifest is not None and command in ("build", "run", "test") \
            else ["--quiet"]
        mark = VIEW_MARK.format(key=key)
        if command == "build" and not extra and manifest is not None and _views_marked(settings, manifest, mark):
            extra = [*extra, "--selector", VIEWS_KEPT]  # the views are this project's already: not recreated
        result = dbtRunner(manifest=manifest).invoke(dbt_args(command, period, [*quiet, *extra],
                                                              settings.lifecycle.lookback_periods, mark))
        if manifest is None and result.success:
            _keep_parse(target, key)
        elif "--no-write-json" in quiet and hasattr(result.result, "write"):
            result.result.write(str(target / "run_results.json"))  # node timings (bench/run.py reads them)
    nodes = []
    results = result.result if command in ("build", "run", "test") and result.result is not None else []
    for item in results:
        nodes.append({"name": item.node.name, "status": str(item.status), "message": item.message,
                      "resource_type": str(getattr(item.node, "resource_type", "")),
                      "schema": getattr(item.node, "schema", None),
                      "materialized": getattr(getattr(item.node, "config", None), "materialized", None)})
    if not result.success:
        failed = [n for n in nodes if n["status"] in ("error", "fail")]
        detail = "; ".join(f"{n['name']}: {n['message']}" for n in failed) or str(result.exception)
        raise RatingFailed(f"dbt {command} failed for {period.key}: {detail}")
    return nodes


def spark_target_path() -> str:
    """dbt's target folder for Spark runs, apart from DuckDB's: each keeps its own partial parse."""
    base = os.environ.get("DBT_TARGET_PATH") or str(DBT_PROJECT_DIR / "target")
    return str(Path(base) / "spark")


def run_on_spark(settings: Settings, period: Period, command: str = "build", extra: Sequence[str] = (),
                 timings: dict[str, float] | None = None) -> list[dict]:
    """Rate the period on Spark; the DuckDB warehouse gets the period's rows of every Spark table.
    `timings`, if given, receives the seconds of each step (the benchmark prints them)."""
    import time
    from dataclasses import replace

    from warehouse.spark import (
        copy_back,
        export_raw,
        keep_profile_ansi_mode,
        model_tables,
        seed_history,
        source_tables,
    )

    try:
        import pyspark  # noqa: F401
    except ImportError as exc:
        raise RatingFailed("BILLING_ENGINE=spark needs pyspark and dbt-spark: `uv sync --extra spark` "
                           "(or `pip install 'billing-warehouse[spark]'`)") from exc
    if command not in ("build", "run"):
        raise ValueError(f"the spark engine runs dbt build or run, not {command}")
    keep_profile_ansi_mode()  # an overflow on Spark is an error, never a NULL amount
    timings = {} if timings is None else timings
    clock = time.perf_counter()

    def lap(step: str) -> None:
        nonlocal clock
        now = time.perf_counter()
        timings[step] = now - clock
        clock = now

    warehouse = open_warehouse(settings)
    folder = spark_dir(settings)
    on_duckdb = replace(settings, engine="duckdb")
    export_raw(warehouse, folder, period, source_tables(DBT_PROJECT_DIR))
    lap("export")
    # The warehouse's own views (staging, ledger marts: the checks and the CLI read them), and, on a
    # new warehouse, its period tables created empty (the copy back fills them): dbt on DuckDB.
    tables, missing = model_tables(warehouse, DBT_PROJECT_DIR)
    if missing:  # views over the tables come after them
        _invoke(on_duckdb, period, "run", ["--select", "staging"])
        exclude = ["--exclude", *[t.name for t in tables]] if tables else []
        _invoke(on_duckdb, period, "run", ["--empty", "--select", "config.materialized:incremental", *exclude])
        tables, _ = model_tables(warehouse, DBT_PROJECT_DIR)
    _invoke(on_duckdb, period, "run", ["--select", "config.materialized:view"])
    history = seed_history(warehouse, folder, period, tables)
    lap("warehouse views, history")
    spark_args = ["--target-path", spark_target_path()]
    registered = [{"schema": t.schema, "name": t.name, "history": history[t.sql]} for t in tables]
    _invoke(settings, period, "run-operation", ["register_period_tables", "--args",
                                                json.dumps({"tables": registered}), *spark_args])
    nodes = _invoke(settings, period, "run", [*spark_args, *extra])
    lap("dbt on spark")
    built = {(n["schema"], n["name"]) for n in nodes if n["materialized"] == "incremental"}
    copy_back(warehouse, folder, period, [t for t in tables if (t.schema, t.name) in built])
    lap("copy back")
    if command == "build":
        # dbt's data tests (keys, grains, relationships; unit tests run in `make test`) on what finance reads: the
        # period copied back into the warehouse (on Spark each is a job of seconds; here milliseconds).
        nodes += _invoke(on_duckdb, period, "test", list(extra))
        lap("dbt tests")
    return nodes
