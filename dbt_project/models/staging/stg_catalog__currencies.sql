select currency, cast(minor_units as integer) as minor_units
from {{ source('catalog', 'currencies') }}
