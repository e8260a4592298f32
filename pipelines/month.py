"""The month job's "nothing changed" skip: the one `billing run` makes (billing/month_inputs.py).

Before rating, the month's inputs are compared with those of its latest rating run. When none changed,
the run's steps (the dbt models, `ledger/rating_run` and the quality checks) keep what that run
produced and say so, instead of rating and checking again; `billing run --force` is the run tag
`billing/force=true`. The comparison is made once per run and month (the dbt step's, before rating)
and the rating run records it, as `billing run` does.

A run that does not rate the month (one that selects `ledger/rating_run` or a check without the dbt
models) never skips and records no inputs: the next run that rates compares against a full record.
"""

from __future__ import annotations

from concurrent.futures import Future

import dagster as dg

from billing import runner
from core.config import Settings
from core.periods import Period
from warehouse.store import Warehouse

FCT_INVOICES = dg.AssetKey(["marts", "fct_invoices"])
FORCE_TAG = "billing/force"

# (run id, month) -> billing.month_inputs.Comparison, made before rating: every step of the run decides
# by the same one (the steps run in one process, definitions.py).
_compared: dict[tuple[str, str], object] = {}
# (run id, month) -> the re-rating started beside the run's dbt step (billing.runner.start_rerating), for its
# checks: misrated_lines uses it while the warehouse still holds what it was made from, as in `billing run`.
_rerated: dict[tuple[str, str], Future] = {}
KEPT_RUNS = 64  # the latest runs kept in each: a long-lived process does not grow with every run it made


def _keep(kept: dict, key: tuple[str, str], value) -> None:
    kept[key] = value
    while len(kept) > KEPT_RUNS:  # the oldest first (dicts keep insertion order)
        del kept[next(iter(kept))]


def rates_the_month(context) -> bool:
    """Whether this run rates the month (it selects the dbt models), so a skip or a record is its to make."""
    selection = context.run.asset_selection  # empty for a run of the whole job
    return not selection or FCT_INVOICES in selection


def forced(context) -> bool:
    return context.run.tags.get(FORCE_TAG, "").lower() in ("1", "true", "yes")


def comparison(context, settings: Settings, warehouse: Warehouse, period: Period):
    """The month's inputs against its latest rating run, computed once per run (None: this run does not rate)."""
    if not rates_the_month(context):
        return None
    key = (context.run.run_id, period.key)
    if key not in _compared:
        _keep(_compared, key, runner.inputs_unchanged(settings, warehouse, period))
    return _compared[key]


def start_rerating(context, warehouse: Warehouse, period: Period) -> None:
    """Re-rate the month in a background thread while this run's dbt step rates it (`rerating` hands it on)."""
    _keep(_rerated, (context.run.run_id, period.key), runner.start_rerating(warehouse, period))


def rerating(context, period: Period):
    """The re-rating this run started beside dbt, waited for; None when this process started none (a check
    run on its own) or it failed: misrated_lines then re-rates by itself."""
    future = _rerated.get((context.run.run_id, period.key))
    return None if future is None else runner.rerating_made(future)


def unchanged(context, settings: Settings, warehouse: Warehouse, period: Period):
    """The comparison when this run may keep the month as it is (nothing changed, not forced), else None."""
    found = comparison(context, settings, warehouse, period)
    return found if found is not None and found.unchanged and not forced(context) else None

