{{ config(materialized='view') }}
{#-
  The customers of the catalog the warehouse holds now (the last one loaded), one row each. Facts
  carry only the account's id (fct_invoices.billing_account_id, fct_unrated_usage.customer_id):
  the name and terms are read here, so a renamed customer is renamed on every draft at once. A view,
  current without a run, and never period-scoped. What an issued invoice named is frozen in the
  ledger (fct_issued_invoices.customer_name) and never read from here.
-#}
select
    cast(customer_id as {{ string_type() }}) as customer_id,
    cast(customer_name as {{ string_type() }}) as customer_name,
    cast(billing_account_id as {{ string_type() }}) as billing_account_id,
    cast(bill_to_customer_id as {{ string_type() }}) as bill_to_customer_id,
    cast(customer_id = billing_account_id as boolean) as is_billing_account,
    cast(currency as {{ string_type() }}) as currency,
    cast(timezone as {{ string_type() }}) as timezone,
    cast(rate_class_id as {{ string_type() }}) as rate_class_id,
    cast(active_from as date) as active_from,
    cast(active_to as date) as active_to,
    cast(csm as {{ string_type() }}) as csm,
    cast(coalesce(require_csm_approval, false) as boolean) as require_csm_approval
from {{ ref('stg_catalog__customers') }}
