select
    catalog_sha256,
    source_path,
    landing_path,
    size_bytes,
    loaded_at
from {{ source('catalog', 'receipts') }}
