select
    file_id,
    source,
    collector,
    original_name,
    size_bytes,
    received_at,
    status,
    rows_received,
    rows_loaded,
    rows_quarantined,
    rows_duplicate,
    error,
    loaded_at
from {{ source('ingest', 'landed_files') }}
