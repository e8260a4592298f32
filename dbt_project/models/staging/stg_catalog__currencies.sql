{#- catalog_sha256: the catalog file the catalog tables were loaded from (every load writes every
    currency, so this table always says which catalog the warehouse holds) -#}
select currency, cast(minor_units as integer) as minor_units, catalog_sha256
from {{ source('catalog', 'currencies') }}
