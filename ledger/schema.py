"""The ledger: what was decided and issued, beside the marts that dbt rebuilds.

dbt computes the *draft* of any period (marts.fct_invoices / fct_invoice_lines); the ledger records
what people did with drafts: approvals, manual charges, issued invoices and credit notes, voids, the
credit balances they leave, the action log and the events for webhooks. Nothing here is rebuilt by
dbt, and no row is ever updated or deleted (the number series' counters are the one exception: a
counter row per series, moved forward inside the issuing transaction). Plain SQL for DuckDB and
PostgreSQL; dbt reads these tables as the `ledger` source.
"""

from __future__ import annotations

from core import money
from warehouse.schema import Table, register
from warehouse.schema import ddl as _ddl

SCHEMA = "ledger"
MONEY = money.LEDGER.sql  # amounts as issued (already rounded to the currency), quantities and unit prices
EXACT = money.LEDGER_EXACT.sql  # a tier's unrounded amount, as exact as the rating's

TABLES: dict[str, str] = {
    # The action log: one row per action, a hash chain (audit.py). seq orders it.
    "actions": """
        seq BIGINT PRIMARY KEY,
        action_id VARCHAR NOT NULL,
        action VARCHAR NOT NULL,                -- invoice.approved, invoice.issued, manual_charge.added, ...
        document_type VARCHAR,                  -- draft_invoice | invoice | credit_note
        document_id VARCHAR,                    -- draft invoice id, invoice or credit note number
        period VARCHAR,
        billing_account_id VARCHAR,
        actor_id VARCHAR NOT NULL,
        actor_role VARCHAR NOT NULL,
        channel VARCHAR NOT NULL,               -- cli | web | dagster | schedule
        reason VARCHAR,                         -- the reason or comment given
        before_state VARCHAR,                   -- JSON
        after_state VARCHAR,                    -- JSON
        acted_at TIMESTAMPTZ NOT NULL,
        prev_hash VARCHAR NOT NULL,             -- entry_hash of seq - 1 ('' for the first)
        entry_hash VARCHAR NOT NULL             -- sha256 of prev_hash and this entry's content
    """,
    # Approvals and rejections of a draft, bound to the draft's content fingerprint.
    "approvals": """
        approval_id VARCHAR PRIMARY KEY,
        invoice_id VARCHAR NOT NULL,            -- the draft's id (marts.fct_invoices.invoice_id)
        period VARCHAR NOT NULL,
        billing_account_id VARCHAR NOT NULL,
        currency VARCHAR NOT NULL,
        draft_fingerprint VARCHAR NOT NULL,     -- what was approved; a changed draft loses it
        person_id VARCHAR NOT NULL,
        role VARCHAR NOT NULL,
        decision VARCHAR NOT NULL,              -- approved | rejected
        comment VARCHAR,
        decided_at TIMESTAMPTZ NOT NULL
    """,
    # Manual charges (a one-off fee) and per-invoice price overrides on a draft; read by dbt.
    "manual_lines": f"""
        manual_line_id VARCHAR PRIMARY KEY,
        period VARCHAR NOT NULL,
        billing_account_id VARCHAR NOT NULL,
        currency VARCHAR NOT NULL,
        kind VARCHAR NOT NULL,                  -- charge | price_override
        product_id VARCHAR,                     -- price_override: the product whose overage it reprices
        description VARCHAR NOT NULL,
        amount {MONEY},                         -- charge: the amount (in the currency)
        unit_price {MONEY},                     -- price_override: the overage unit price
        author_id VARCHAR NOT NULL,
        reason VARCHAR NOT NULL,
        created_at TIMESTAMPTZ NOT NULL
    """,
    # Gapless numbers: one counter per series (INV-2026, CN-2026), moved in the issuing transaction.
    "number_series": """
        series VARCHAR PRIMARY KEY,
        last_number BIGINT NOT NULL
    """,
    # Issued invoices, frozen: everything the document shows, as issued.
    "invoices": f"""
        invoice_number VARCHAR PRIMARY KEY,
        series VARCHAR NOT NULL,
        sequence_number BIGINT NOT NULL,
        invoice_id VARCHAR NOT NULL,            -- the draft it was issued from
        period VARCHAR NOT NULL,
        period_start DATE NOT NULL,
        period_end DATE NOT NULL,
        billing_account_id VARCHAR NOT NULL,
        customer_name VARCHAR NOT NULL,
        currency VARCHAR NOT NULL,
        subtotal {MONEY} NOT NULL,              -- sum of the lines before credit applied / carried
        total {MONEY} NOT NULL,                 -- what is due; never negative
        issue_date DATE NOT NULL,
        issued_at TIMESTAMPTZ NOT NULL,
        issued_by VARCHAR NOT NULL,
        reissue_of VARCHAR,                     -- the voided invoice this one replaces
        draft_fingerprint VARCHAR NOT NULL,
        data_fingerprint VARCHAR NOT NULL,      -- of the events and catalog the draft was rated from
        catalog_sha256 VARCHAR,
        rating_run_id VARCHAR,
        pdf_sha256 VARCHAR NOT NULL,
        snapshot VARCHAR NOT NULL               -- JSON: the whole document as rendered (parties, lines, tiers)
    """,
    "invoice_lines": f"""
        invoice_number VARCHAR NOT NULL,
        line_number INTEGER NOT NULL,
        line_id VARCHAR NOT NULL,               -- the draft line it froze
        line_type VARCHAR NOT NULL,             -- usage | recurring | minimum_commitment | manual | adjustment | credit_applied | credit_carried
        product_id VARCHAR,
        description VARCHAR NOT NULL,
        quantity {MONEY},
        unit_price {MONEY},
        amount {MONEY} NOT NULL,
        rate_level VARCHAR,
        rate_id VARCHAR,
        segment_start DATE,
        segment_end DATE,
        corrected_period VARCHAR,               -- adjustment: the period it corrects
        corrected_invoice_number VARCHAR,       -- adjustment: the issued invoice it corrects
        PRIMARY KEY (invoice_number, line_number)
    """,
    "invoice_line_tiers": f"""
        invoice_number VARCHAR NOT NULL,
        line_number INTEGER NOT NULL,
        tier_number INTEGER NOT NULL,
        units {MONEY},
        unit_price {MONEY},
        flat_fee {MONEY},
        amount {EXACT}                          -- the tier's exact (unrounded) contribution
    """,
    # A void is a row of its own: the invoice keeps its number and its content.
    "voids": """
        invoice_number VARCHAR PRIMARY KEY,
        reason VARCHAR NOT NULL,
        voided_by VARCHAR NOT NULL,
        voided_at TIMESTAMPTZ NOT NULL
    """,
    "credit_notes": f"""
        credit_note_number VARCHAR PRIMARY KEY,
        series VARCHAR NOT NULL,
        sequence_number BIGINT NOT NULL,
        invoice_number VARCHAR NOT NULL,        -- the invoice it credits
        billing_account_id VARCHAR NOT NULL,
        currency VARCHAR NOT NULL,
        total {MONEY} NOT NULL,                 -- positive: the amount credited
        reason_code VARCHAR NOT NULL,           -- duplicate | order_change | product_unsatisfactory | fraudulent | other
        comment VARCHAR,
        issue_date DATE NOT NULL,
        issued_at TIMESTAMPTZ NOT NULL,
        issued_by VARCHAR NOT NULL,
        pdf_sha256 VARCHAR NOT NULL,
        snapshot VARCHAR NOT NULL
    """,
    "credit_note_lines": f"""
        credit_note_number VARCHAR NOT NULL,
        line_number INTEGER NOT NULL,
        invoice_number VARCHAR NOT NULL,
        invoice_line_number INTEGER NOT NULL,
        quantity {MONEY},
        amount {MONEY} NOT NULL,
        PRIMARY KEY (credit_note_number, line_number)
    """,
    # Credit an account holds: + when an invoice would have been negative, - when a later one uses it.
    "credit_balance_entries": f"""
        entry_id VARCHAR PRIMARY KEY,
        billing_account_id VARCHAR NOT NULL,
        currency VARCHAR NOT NULL,
        amount {MONEY} NOT NULL,
        invoice_number VARCHAR NOT NULL,        -- the invoice that left or used it
        created_at TIMESTAMPTZ NOT NULL
    """,
    # Rendered documents, stored by sha256 (the bytes are files under <home>/documents/).
    "documents": """
        sha256 VARCHAR PRIMARY KEY,
        document_type VARCHAR NOT NULL,         -- invoice | credit_note
        document_number VARCHAR NOT NULL,
        media_type VARCHAR NOT NULL,
        size_bytes BIGINT NOT NULL,
        path VARCHAR NOT NULL,
        stored_at TIMESTAMPTZ NOT NULL
    """,
    # What a period's rating run saw: the draft fingerprints and checks the issue gate reads.
    "rating_runs": """
        run_id VARCHAR PRIMARY KEY,
        period VARCHAR NOT NULL,
        finished_at TIMESTAMPTZ NOT NULL,
        catalog_sha256 VARCHAR,
        blocking_findings VARCHAR NOT NULL,     -- JSON list of the run's blocking findings
        drafts VARCHAR NOT NULL                 -- JSON {invoice_id: {draft_fingerprint, data_fingerprint}}
    """,
    # What a rating run rated from (billing/month_inputs.py): a rerun whose inputs are all equal skips
    # rating and checking, and reports this run's outcomes.
    "rating_inputs": """
        run_id VARCHAR PRIMARY KEY,             -- the rating run (rating_runs.run_id)
        period VARCHAR NOT NULL,
        inputs_sha256 VARCHAR NOT NULL,
        parts VARCHAR NOT NULL,                 -- JSON {part: sha256}: code, settings, catalog, ingest, ledger, ...
        outcomes VARCHAR NOT NULL,              -- JSON [{name, passed, blocking, summary}] of the run's checks
        recorded_at TIMESTAMPTZ NOT NULL
    """,
    # Review desk sign-in (desk/auth.py): password hashes, append-only: a person's latest row wins.
    "credentials": """
        person_id VARCHAR NOT NULL,
        password_hash VARCHAR NOT NULL,         -- argon2id, never the password
        set_at TIMESTAMPTZ NOT NULL
    """,
    # Review desk sessions: the cookie holds a random id, this table its sha256; a session ends by a
    # row in session_ends (sign-out), so a cookie from before sign-out is refused.
    "sessions": """
        session_hash VARCHAR PRIMARY KEY,
        person_id VARCHAR NOT NULL,
        csrf_token VARCHAR NOT NULL,            -- every form of the session carries it
        client VARCHAR,                         -- the address it signed in from
        created_at TIMESTAMPTZ NOT NULL,
        expires_at TIMESTAMPTZ NOT NULL
    """,
    "session_ends": """
        session_hash VARCHAR NOT NULL,
        ended_at TIMESTAMPTZ NOT NULL
    """,
    # Every sign-in attempt (failed ones slow the next down and lock the person or address out a while).
    "sign_ins": """
        person_id VARCHAR NOT NULL,             -- as typed (may be no person of the file)
        client VARCHAR,
        succeeded BOOLEAN NOT NULL,
        attempted_at TIMESTAMPTZ NOT NULL
    """,
    # Events for webhooks, written in the action's transaction (the outbox pattern).
    "outbox": """
        event_id VARCHAR PRIMARY KEY,           -- also the webhook-id header
        seq BIGINT NOT NULL,                    -- delivery order
        event_type VARCHAR NOT NULL,            -- invoice.approved | invoice.issued | invoice.voided | credit_note.issued
        document_number VARCHAR,
        payload VARCHAR NOT NULL,               -- JSON body as sent: {"type", "timestamp", "data"}
        created_at TIMESTAMPTZ NOT NULL
    """,
    # Every delivery attempt of an event to an endpoint; delivered only after a 2xx.
    "outbox_attempts": """
        event_id VARCHAR NOT NULL,
        endpoint VARCHAR NOT NULL,              -- the endpoint's name in the config
        attempt INTEGER NOT NULL,
        status_code INTEGER,
        error VARCHAR,
        delivered BOOLEAN NOT NULL,
        attempted_at TIMESTAMPTZ NOT NULL
    """,
}


LEDGER_TABLES = register(*(Table(SCHEMA, name, columns) for name, columns in TABLES.items()))


def ddl(dialect: str = "duckdb") -> list[str]:
    """Statements creating the ledger's tables where missing (warehouse/schema.py renders them)."""
    return _ddl(dialect, LEDGER_TABLES)
