select
    customer_id,
    customer_name,
    currency,
    timezone,
    bill_to_customer_id,
    billing_account_id,
    rate_class_id,
    active_from,
    active_to,
    csm,
    require_csm_approval
from {{ source('catalog', 'customers') }}
