"""Source definitions: where usage comes from and how its files map onto the event contract.

The event contract every source is mapped onto: event_id, customer_id, product_id, quantity,
occurred_at. A source names, for each, the column in its files that holds it (`columns`).
"""

from __future__ import annotations

from dataclasses import dataclass, field

EVENT_FIELDS = ("event_id", "customer_id", "product_id", "quantity", "occurred_at")


@dataclass(frozen=True)
class SourceConfig:
    name: str
    kind: str = "upload"  # upload | sftp | api
    format: str = "auto"  # auto (by file suffix) | csv | jsonl
    delimiter: str = ","
    timezone: str | None = None  # zone of naive timestamps; None = naive timestamps are refused
    columns: dict[str, str] = field(default_factory=lambda: {f: f for f in EVENT_FIELDS})

    def column(self, event_field: str) -> str:
        return self.columns.get(event_field, event_field)


DEFAULT_UPLOAD_SOURCE = SourceConfig(name="upload", kind="upload")


def load_sources(path) -> dict[str, SourceConfig]:
    """Sources by name from the sources file (docs/sources.md); the upload source is always there."""
    sources = {DEFAULT_UPLOAD_SOURCE.name: DEFAULT_UPLOAD_SOURCE}
    if path is None:
        return sources
    import yaml

    doc = yaml.safe_load(open(path, encoding="utf-8")) or {}
    for entry in doc.get("sources") or []:
        config = SourceConfig(**entry)
        sources[config.name] = config
    return sources
