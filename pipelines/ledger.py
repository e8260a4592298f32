"""The ledger in the asset graph: its tables as external assets (written by lifecycle actions, read
by dbt), the month's rating run (the drafts and blocking findings that issuing checks against), and
the issuing of every issuable draft of the month (docs/lifecycle.md)."""

import dagster as dg

from ledger.schema import TABLES

from . import month
from .partitions import billing_months, period_of
from .resources import BillingResource

# Tables dbt reads as the `ledger` source; people write them through the CLI and the review desk.
LEDGER_SOURCES = ("manual_lines", "invoices", "invoice_lines", "voids", "credit_notes", "credit_note_lines",
                  "credit_balance_entries")

ledger_tables = [
    dg.AssetSpec(["ledger", name], group_name="ledger",
                 description=f"ledger.{name}: written by lifecycle actions (billing invoices ..., the review desk, "
                             "the issue job) in one transaction each; never rebuilt, updated or deleted.")
    for name in LEDGER_SOURCES if name in TABLES
]


@dg.asset(
    key=["ledger", "rating_run"],
    deps=[dg.AssetKey(["marts", "fct_invoices"]), dg.AssetKey(["marts", "fct_invoice_line_sources"])],
    partitions_def=billing_months,
    backfill_policy=dg.BackfillPolicy.multi_run(1),
    group_name="ledger",
    description="The month's checks, and the record issuing reads: every draft's fingerprint and data "
                "fingerprint and the run's blocking findings (ledger.rating_runs); what `billing run` does "
                "after rating (billing/runner.py check_month).",
)
def rating_run(context: dg.AssetExecutionContext, billing: BillingResource) -> dg.MaterializeResult:
    from billing import runner
    from billing.month_inputs import stored_outcomes

    period = period_of(context.partition_key)
    settings, warehouse = billing.settings(), billing.open_warehouse()
    kept = month.unchanged(context, settings, warehouse, period)
    if kept is not None:  # the dbt step kept the month too: that run's record and findings stand
        outcomes, about = stored_outcomes(warehouse, kept.previous), {"unchanged_since": kept.previous.run_id}
    else:
        compared = month.comparison(context, settings, warehouse, period)
        outcomes = runner.check_month(settings, warehouse, period, context.run.run_id,
                                      inputs=compared.inputs if compared is not None else None,
                                      prerated=month.rerating(context, period))
        about = {}
    blocking = [o.name for o in outcomes if o.blocking and not o.passed]
    return dg.MaterializeResult(metadata={"period": period.key, "blocking_checks_failed": ", ".join(blocking),
                                          **about})


@dg.asset(
    key=["ledger", "issued_invoices"],
    deps=[rating_run],
    partitions_def=billing_months,
    backfill_policy=dg.BackfillPolicy.multi_run(1),
    group_name="ledger",
    description="Issues every draft of the month that may be issued now: approved under the policy, or of a "
                "customer that needs no approval (approval.no_approval_customers), as the 'system' actor.",
)
def issued_invoices(context: dg.AssetExecutionContext, billing: BillingResource) -> dg.MaterializeResult:
    from ledger.lifecycle import Lifecycle

    period = period_of(context.partition_key)
    lifecycle = Lifecycle(billing.settings(), channel="dagster")
    issued, left = lifecycle.issue_period("system", period.key)
    for status in left:
        context.log.info(f"not issued: {status.draft.billing_account_id} ({status.draft.currency} "
                         f"{status.draft.total}): {'; '.join(status.needs)}")
    return dg.MaterializeResult(metadata={
        "issued": ", ".join(i.invoice_number for i in issued) or "none",
        "waiting": len(left),
    })


issue_invoices_job = dg.define_asset_job(
    "issue_invoices",
    selection=dg.AssetSelection.assets(issued_invoices),
    description="Issue the month's approved invoices (and those of customers that need no approval).",
)
