"""A customer's name lives in marts.dim_customers (the catalog loaded now), not in the invoice facts: a
renamed customer is renamed on its drafts at once, and a draft whose account left the catalog shows
unnamed and cannot be issued until it is back."""

from __future__ import annotations

from scenario import bill, rows

from billing import runner
from core.config import load_settings
from ledger.drafts import load_drafts
from ledger.lifecycle import Lifecycle

from support import billing_env

CATALOG = """
products:
  - code: API
    prices:
      - {{currency: USD, model: per_unit, unit_price: "0.50"}}
customers:
  - {{id: ACME, name: "{acme}", currency: USD}}
{others}
"""
GLOBEX = '  - {id: GLOBEX, name: "Globex", currency: USD}'
USAGE = """event_id,customer_id,product_id,quantity,occurred_at
e1,ACME,API,10,2021-03-10T12:00:00Z
e2,GLOBEX,API,4,2021-03-11T12:00:00Z
"""


def test_drafts_are_named_by_the_catalog_loaded_now(tmp_path):
    home = tmp_path / "home"
    settings, _ = bill(home, CATALOG.format(acme="Acme", others=GLOBEX), USAGE, ["2021-03"], checks=False)
    columns = [r[0] for r in rows(settings, "SELECT column_name FROM information_schema.columns "
                                            "WHERE table_schema = 'marts' AND table_name = 'fct_invoices'")]
    assert "customer_name" not in columns and "billing_account_id" in columns

    def lifecycle() -> Lifecycle:
        return Lifecycle(load_settings())

    def drafts():
        with lifecycle().warehouse.transaction() as tx:
            return {d.billing_account_id: d.customer_name for d in load_drafts(tx, "2021-03", with_lines=False)}

    with billing_env(home, home / "catalog.yaml"):
        assert drafts() == {"ACME": "Acme", "GLOBEX": "Globex"}
        # a new catalog, not rated yet: ACME renamed, GLOBEX gone
        (home / "catalog.yaml").write_text(CATALOG.format(acme="Acme Corporation", others=""))
        runner.load_catalog_stage(load_settings(), runner.prepare(load_settings()))
        assert drafts() == {"ACME": "Acme Corporation", "GLOBEX": None}
        status = {s.draft.billing_account_id: s.needs for s in lifecycle().status("2021-03")}
        assert any("GLOBEX is not a customer of the catalog any more" in need for need in status["GLOBEX"])
        assert not any("catalog any more" in need for need in status["ACME"])
