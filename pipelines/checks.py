"""Quality checks as Dagster asset checks (logic: quality/checks.py and quality/expectations.py).

- `quality_checks`: the checks of quality/checks.py (unrated_usage, ..., anomalies), on marts/fct_invoices;
- `expectation_checks`: the Great Expectations suites, `events_expectations` on the month's events
  (staging/stg_usage__events, the month's view of raw.events) and `invoice_expectations` on marts/fct_invoices;
- `asset_checks`: both lists, what definitions.py registers.

Every check is partitioned like its asset: it checks the month it is run for (`context.partition_key`).
"""

import dagster as dg

from quality import checks as q
from quality.findings import write_findings

from . import month
from .partitions import billing_months, period_of
from .resources import BillingResource

FCT_INVOICES = dg.AssetKey(["marts", "fct_invoices"])


def _result(outcome: q.CheckOutcome, **about) -> dg.AssetCheckResult:
    return dg.AssetCheckResult(
        passed=outcome.passed,
        severity=dg.AssetCheckSeverity.ERROR if outcome.blocking else dg.AssetCheckSeverity.WARN,
        description=outcome.summary,
        metadata={"blocks_finalization": outcome.blocking, "findings": dg.MetadataValue.json(outcome.findings[:200]),
                  "finding_count": len(outcome.findings), **about},
    )


def _make(check_fn) -> dg.AssetChecksDefinition:
    # Not Dagster-blocking yet: nothing downstream of the marts to hold back until invoices are
    # finalized as their own asset. Severity ERROR marks the checks that will block finalization.
    @dg.asset_check(asset=FCT_INVOICES, name=check_fn.__name__, description=check_fn.__doc__,
                    partitions_def=billing_months)
    def _check(context: dg.AssetCheckExecutionContext, billing: BillingResource) -> dg.AssetCheckResult:
        period = period_of(context.partition_key)
        warehouse = billing.open_warehouse()
        kept = month.unchanged(context, billing.settings(), warehouse, period)
        if kept is not None:  # nothing changed since the month's latest rating run: its outcome stands
            from billing.month_inputs import stored_outcomes

            [stored] = [o for o in stored_outcomes(warehouse, kept.previous) if o.name == check_fn.__name__]
            return _result(stored, unchanged_since=kept.previous.run_id)
        with warehouse.transaction() as tx:
            # by the warehouse's catalog, the one dbt priced with
            prerated = month.rerating(context, period) if check_fn is q.misrated_lines else None
            outcome = q.configured(check_fn, billing.settings().anomaly_factor, prerated)(tx, period)
        # Every finding also lands in marts.quality_findings, replacing this check's rows for the period.
        write_findings(warehouse, [outcome], period.key, context.run.run_id)
        return _result(outcome)

    return _check


quality_checks = [_make(fn) for fn in q.CHECKS]


# --- Great Expectations suites (quality/expectations.py) ---------------------------------------------

# raw/events is not partitioned (the collect job loads whatever arrives); the month's events are checked
# on the month's view of them, which the month job builds.
MONTH_EVENTS = dg.AssetKey(["staging", "stg_usage__events"])


def _expectations_result(name: str, context: dg.AssetCheckExecutionContext,
                         billing: BillingResource) -> dg.AssetCheckResult:
    """Run the suites of the check `name` (quality.expectations.CHECK_SUITES) on the check's month."""
    from quality import expectations as gxq

    period = period_of(context.partition_key)
    settings = billing.settings()
    # Failures also land in marts.quality_findings, replacing this check's rows for the period.
    [done] = gxq.run_checks(billing.open_warehouse(), period, settings.home, context.run.run_id, [name])
    results, passed, summary = done.results, done.outcome.passed, done.outcome.summary
    failed = [{"suite": r.suite, "table": r.table, "expectation": f["expectation"],
               "unexpected_count": f["unexpected_count"], "observed_value": f["observed_value"],
               "unexpected_values": f["unexpected_values"][:gxq.SAMPLE_ROWS], "rows": f["rows"][:gxq.SAMPLE_ROWS],
               **({"error": f["error"]} if f.get("error") else {})}
              for r in results for f in r.failures]
    metadata: dict = {
        "period": period.key,
        "failed_expectations": dg.MetadataValue.json(failed),
        "failed_expectation_count": len(failed),
        "suites": dg.MetadataValue.json([{"suite": r.suite, "table": r.table, "rows": r.rows,
                                          "expectations": r.evaluated, "failed": len(r.failures),
                                          "result": str(r.path)} for r in results]),
        "validation_results": dg.MetadataValue.path(str(gxq.validations_dir(settings.home, period.key,
                                                                             context.run.run_id))),
    }
    for r in results:
        metadata[f"{r.suite}_result"] = dg.MetadataValue.path(str(r.path))
        if r.html_path:
            metadata[f"{r.suite}_data_docs"] = dg.MetadataValue.path(str(r.html_path))
    context.log.info(f"{name} ({period.key}): {summary}")
    return dg.AssetCheckResult(passed=passed, severity=dg.AssetCheckSeverity.ERROR, description=summary,
                               metadata=metadata)


@dg.asset_check(asset=MONTH_EVENTS, name="events_expectations", partitions_def=billing_months)
def events_expectations(context: dg.AssetCheckExecutionContext, billing: BillingResource) -> dg.AssetCheckResult:
    """Great Expectations suite `raw_events` on the month's normalized events: columns and types (quantity
    an exact Decimal, timestamps), no nulls, (source, event_id) and (file_id, row_number) unique,
    quantity >= 0, row numbers from 1, file ids that are sha256 digests. Result JSON under
    <BILLING_HOME>/quality/validations/<period>/<run_id>/."""
    return _expectations_result("events_expectations", context, billing)


@dg.asset_check(asset=FCT_INVOICES, name="invoice_expectations", partitions_def=billing_months)
def invoice_expectations(context: dg.AssetCheckExecutionContext, billing: BillingResource) -> dg.AssetCheckResult:
    """Great Expectations suites on the month's invoice marts (fct_invoices, fct_invoice_lines,
    fct_invoice_line_tiers): unique invoice_id, line_id and (line_id, tier_number); every line on one of
    the month's invoices; ISO 4217 currencies, known statuses, rate levels, line types and pricing
    models; decimals never negative; each amount = its unrounded amount rounded once to the currency's
    minor unit. Result JSON under <BILLING_HOME>/quality/validations/<period>/<run_id>/."""
    return _expectations_result("invoice_expectations", context, billing)


expectation_checks = [events_expectations, invoice_expectations]

# What the code location (definitions.py) registers: every check of this module.
asset_checks = [*quality_checks, *expectation_checks]
