"""Every mart model and each of its columns is described in the dbt docs (`make docs`).

Reads dbt_project/target/manifest.json, which `make setup` (dbt parse) builds; conftest.py builds it
if it is missing.
"""

from __future__ import annotations

import json

from support import ROOT

TARGET = ROOT / "dbt_project" / "target"


def mart_models() -> dict[str, dict]:
    manifest = json.loads((TARGET / "manifest.json").read_text(encoding="utf-8"))
    return {node["name"]: node for node in manifest["nodes"].values()
            if node["resource_type"] == "model" and node["fqn"][1] == "marts"}


def test_every_mart_model_and_column_has_a_description():
    marts = mart_models()
    assert {"fct_invoices", "fct_invoice_lines", "fct_invoice_line_tiers", "fct_unrated_usage",
            "fct_invoice_line_sources"} <= set(marts)
    missing = []
    for name, node in sorted(marts.items()):
        if not node["description"].strip():
            missing.append(name)
        # An enforced contract makes the YAML list every column the model returns, with its type.
        assert node["contract"]["enforced"], f"{name}: contract not enforced, columns may be undocumented"
        assert node["columns"], f"{name}: no columns documented"
        missing += [f"{name}.{column}" for column, spec in node["columns"].items()
                    if not (spec.get("description") or "").strip()]
    assert missing == [], f"undocumented in dbt_project/models/marts/*.yml: {missing}"


def test_the_docs_catalog_has_no_undocumented_mart_column():
    """After `make docs`: the columns the built tables really have are all in the YAML."""
    catalog_file = TARGET / "catalog.json"
    if not catalog_file.exists():
        return  # `make docs` has not run here; the contract check above covers the YAML
    catalog = json.loads(catalog_file.read_text(encoding="utf-8"))
    for name, node in mart_models().items():
        built = catalog["nodes"].get(node["unique_id"])
        if built is None:
            continue
        assert {c.lower() for c in built["columns"]} <= set(node["columns"]), name
