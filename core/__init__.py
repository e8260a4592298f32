"""The bottom of the house: what every other package imports, importing nothing of ours.

- `periods`: a billing month's UTC bounds, local days, padded window and month arithmetic;
- `money`: the decimal digits of quantities, prices and amounts, currencies' minor units, rounding;
- `config`: Settings, read once from the config file and the environment;
- `events`: the event contract (columns, types, what a source delivers);
- `enums`: the closed lists (pricing models, aggregations, rate levels, ...) dbt's accepted values name.
"""
