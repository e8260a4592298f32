select account_product_id, customer_id, product_id, effective_from, effective_to, override_rate_id
from {{ source('catalog', 'account_products') }}
