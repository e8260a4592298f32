"""Quality checks as Dagster asset checks on the invoice marts (logic: quality/checks.py)."""

import dagster as dg

from billing.config import load_settings
from catalog.load import load_catalog
from quality import checks as q
from quality.findings import write_findings

from .partitions import period_of

FCT_INVOICES = dg.AssetKey(["marts", "fct_invoices"])


def _result(outcome: q.CheckOutcome) -> dg.AssetCheckResult:
    return dg.AssetCheckResult(
        passed=outcome.passed,
        severity=dg.AssetCheckSeverity.ERROR if outcome.blocking else dg.AssetCheckSeverity.WARN,
        description=outcome.summary,
        metadata={"blocks_finalization": outcome.blocking, "findings": dg.MetadataValue.json(outcome.findings[:200]), "finding_count": len(outcome.findings)},
    )


def _make(check_fn) -> dg.AssetChecksDefinition:
    # Not Dagster-blocking yet: nothing downstream of the marts to hold back until invoices are
    # finalized as their own asset. Severity ERROR marks the checks that will block finalization.
    @dg.asset_check(asset=FCT_INVOICES, name=check_fn.__name__, description=check_fn.__doc__)
    def _check(context: dg.AssetCheckExecutionContext) -> dg.AssetCheckResult:
        period = period_of(context.run.tags.get("dagster/partition") or "")
        settings = load_settings()
        warehouse = settings.warehouse()
        with warehouse.transaction() as tx:
            outcome = check_fn(tx, period, load_catalog(settings.catalog))
        # Every finding also lands in marts.quality_findings, replacing this check's rows for the period.
        write_findings(warehouse, [outcome], period.key, context.run.run_id)
        return _result(outcome)

    return _check


invoice_checks = [_make(fn) for fn in q.CHECKS]
