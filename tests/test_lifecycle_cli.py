"""The lifecycle from the command line, as finance would use it on a billed reference month:
`billing invoices list/approve/issue/show`, refusals with exit status 4 naming who may, approvals
that lapse when a rerun changes the draft (and the log saying why), `billing audit verify`."""

from __future__ import annotations

from datetime import date

import pytest

from billing.cli import main
from ledger.lifecycle import Refused

from lifecycle_support import late_event, reference_lifecycle, run_month
from support import REFERENCE, new_home, query

REFUSED = 4


@pytest.fixture(scope="module")
def billed(tmp_path_factory):
    home = new_home(tmp_path_factory, "lifecycle-cli")
    with reference_lifecycle(home) as lifecycle:
        yield home, lifecycle


def test_refusals_exit_4_and_name_who_may(billed, capsys):
    assert main(["invoices", "approve", "--month", "2026-10", "--account", "C1", "--as", "ada"]) == REFUSED
    out = capsys.readouterr().out
    assert "refused" in out and "fiona (finance)" in out and "fay (finance)" in out
    assert main(["invoices", "approve", "--month", "2026-10", "--account", "C1"]) == REFUSED  # who acts?
    assert "--as PERSON" in capsys.readouterr().out
    assert main(["invoices", "approve", "--month", "2026-10", "--account", "C1", "--as", "nobody"]) == REFUSED
    assert "not in the people file" in capsys.readouterr().out


def test_approvals_lapse_when_a_rerun_changes_the_draft(billed, capsys):
    home, lifecycle = billed
    assert main(["invoices", "approve", "--month", "2026-10", "--account", "C5", "--as", "fiona"]) == 0
    assert "issuable" in capsys.readouterr().out
    late_event(home / "inbox", "c5-late.jsonl", "C5", 500, "2026-10-12", "c5-api-late")
    run_month("2026-10")  # C5's draft gains a usage line (its total stays 200.00: the true-up shrinks)
    assert query(home, "SELECT total FROM marts.fct_invoices WHERE period = '2026-10' AND billing_account_id = 'C5'")[0][0] == 200
    with pytest.raises(Refused, match="1 more finance approval"):
        lifecycle.issue("fiona", "2026-10", "C5", issue_date=date(2026, 11, 2))
    assert main(["invoices", "issue", "--month", "2026-10", "--account", "C5", "--as", "fiona"]) == REFUSED
    [(reason,)] = query(home, "SELECT reason FROM ledger.actions WHERE action = 'invoice.approvals_lapsed'")
    assert "the draft changed" in reason
    assert main(["invoices", "approve", "--month", "2026-10", "--account", "C5", "--as", "fiona"]) == 0
    assert main(["invoices", "issue", "--month", "2026-10", "--account", "C5", "--as", "fiona",
                 "--date", "2026-11-02"]) == 0
    assert "INV-2026-000001" in capsys.readouterr().out


def test_list_show_and_verify(billed, capsys):
    assert main(["invoices", "list", "--month", "2026-10"]) == 0
    listing = capsys.readouterr().out
    assert "INV-2026-000001" in listing and "unrated usage" in listing
    assert main(["invoices", "show", "INV-2026-000001"]) == 0
    shown = capsys.readouterr().out
    assert "total USD 200.00" in shown and "PDF:" in shown
    [(catalog,)] = query(billed[0], "SELECT catalog_sha256 FROM marts.fct_invoices WHERE invoice_id = "
                                    "(SELECT invoice_id FROM ledger.invoices WHERE invoice_number = 'INV-2026-000001')")
    assert len(catalog) == 64 and f"priced with catalog sha256 {catalog}" in shown
    assert main(["audit", "verify"]) == 0
    assert "audit log verified" in capsys.readouterr().out


def test_the_dagster_issue_job_issues_customers_that_need_no_approval(billed, tmp_path, monkeypatch):
    import dagster as dg
    import yaml

    from core.config import load_settings
    from pipelines.ledger import issued_invoices
    from pipelines.resources import BillingResource

    home, _ = billed
    config = yaml.safe_load((REFERENCE / "billing.yaml").read_text())
    config.update(catalog=str(REFERENCE / "catalog.yaml"), people=str(REFERENCE / "people.yaml"))
    config["approval"]["no_approval_customers"] = ["C1"]
    (tmp_path / "billing.yaml").write_text(yaml.safe_dump(config))
    monkeypatch.setenv("BILLING_CONFIG", str(tmp_path / "billing.yaml"))
    settings = load_settings()  # the billing.yaml above, as the code location would read it once
    result = dg.materialize([issued_invoices], partition_key="2026-10-01", instance=dg.DagsterInstance.ephemeral(),
                            resources={"billing": BillingResource.from_settings(settings)})
    assert result.success
    issued = query(home, "SELECT invoice_number, billing_account_id, issued_by FROM ledger.invoices ORDER BY 1")
    assert issued == [("INV-2026-000001", "C5", "fiona"), ("INV-2026-000002", "C1", "system")]
    assert query(home, "SELECT channel FROM ledger.actions WHERE document_id = 'INV-2026-000002'") == [("dagster",)]
