{#-
  Lineage of each usage line to the files it came from: per invoice line and source file, how
  many of the file's events (and which rows) the line prices. Events are placed on their local
  days (int_events_localized), matched to the price of that day (int_billable_days_rated), and
  so to the line pricing (account, product, currency, rate). A file delivered twice has one
  file_id (its sha256) and appears once.
-#}

with events as (
    select billing_account_id, product_id, usage_date, source, file_id, file_row_number, quantity
    from {{ ref('int_events_localized') }}
    where is_known_customer and is_known_product
),

rated_days as (
    select billing_account_id, product_id, usage_date, currency, rate_id
    from {{ ref('int_billable_days_rated') }}
    where period = {{ period_key() }} and rate_id is not null
),

lines as (
    select line_id, billing_account_id, product_id, currency, rate_id
    from {{ ref('fct_invoice_lines') }}
    where period = {{ period_key() }} and usage_rollup_id is not null
),

contributions as (
    select
        l.line_id,
        e.file_id,
        min(e.source) as source,
        count(*) as event_count,
        sum(e.quantity) as quantity,
        min(e.file_row_number) as first_row_number,
        max(e.file_row_number) as last_row_number
    from events as e
    inner join rated_days as d
        on d.billing_account_id = e.billing_account_id
        and d.product_id = e.product_id
        and d.usage_date = e.usage_date
    inner join lines as l
        on l.billing_account_id = d.billing_account_id
        and l.product_id = d.product_id
        and l.currency = d.currency
        and l.rate_id = d.rate_id
    group by l.line_id, e.file_id
)

select
    cast({{ period_key() }} as {{ string_type() }}) as period,
    cast(c.line_id as {{ string_type() }}) as line_id,
    cast(c.file_id as {{ string_type() }}) as file_id,
    cast(coalesce(f.source, c.source) as {{ string_type() }}) as source,
    cast(f.original_name as {{ string_type() }}) as original_name,
    cast(f.collector as {{ string_type() }}) as collector,
    cast(f.received_at as {{ instant_type() }}) as received_at,
    cast(c.event_count as bigint) as event_count,
    cast(c.quantity as {{ quantity_type() }}) as quantity,
    cast(c.first_row_number as bigint) as first_row_number,
    cast(c.last_row_number as bigint) as last_row_number
from contributions as c
left join {{ ref('stg_ingest__landed_files') }} as f on f.file_id = c.file_id
