"""Source definitions: the sources file, and what every source has whatever its kind.

One YAML file lists the sources (docs/sources.md, examples/sources.yaml). Each has a name, a
kind (a registered collector kind: upload, sftp, api, ...; collectors/registry.py), its file-format
settings (formats/: how normalize reads its files) and its kind's `connection` settings (read by
the kind's own module). Secrets are never in the file: it names the environment variable that
holds them (`password_env`, `token_env`, ...), which is read only when a collector connects, so
loading the file never needs the secrets.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any

from formats import Section, SourceConfigError, SourceFormat, read_format

from . import registry

DEFAULT_SOURCE = "upload"  # always there, even without a sources file: the config's inbox, default format
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")


@dataclass(frozen=True)
class SourceConfig:
    name: str
    kind: str  # a registered collector kind (collectors/registry.py)
    file_format: SourceFormat  # how its files are read (formats/)
    connection: Any  # its kind's settings_schema, read from `connection:`


@cache
def default_source() -> SourceConfig:
    """The `upload` source as it is when the sources file does not define it."""
    return _parse_source({"name": DEFAULT_SOURCE}, 0, Path("."), "defaults")


def load_sources(path) -> dict[str, SourceConfig]:
    """Sources by name from the sources file (docs/sources.md); the upload source is always there.

    Relative paths in the file (key_file, known_hosts, inbox) are read from the file's folder.
    Raises SourceConfigError naming the source and the field when the file is wrong.
    """
    if path is None:
        return {DEFAULT_SOURCE: default_source()}
    import yaml

    path = Path(path)
    try:
        doc = yaml.safe_load(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise SourceConfigError(f"sources file {path} not found") from None
    except yaml.YAMLError as exc:
        raise SourceConfigError(f"{path}: not valid YAML: {exc}") from None
    return parse_sources(doc, base_dir=path.resolve().parent, origin=str(path))


def parse_sources(doc: Any, *, base_dir: Path, origin: str = "sources") -> dict[str, SourceConfig]:
    """Validate a parsed sources document (a mapping with a `sources` list)."""
    sources = {DEFAULT_SOURCE: default_source()}
    if doc is None:
        return sources
    if not isinstance(doc, dict):
        raise SourceConfigError(f"{origin}: must be a mapping with a 'sources' list")
    unknown = set(doc) - {"sources"}
    if unknown:
        raise SourceConfigError(f"{origin}: unknown top-level key(s) {', '.join(sorted(map(str, unknown)))};"
                                " only 'sources' is allowed")
    entries = doc.get("sources") or []
    if not isinstance(entries, list):
        raise SourceConfigError(f"{origin}: 'sources' must be a list of sources")
    seen: set[str] = set()
    for index, entry in enumerate(entries):
        config = _parse_source(entry, index, base_dir, origin)
        if config.name in seen:
            raise SourceConfigError(f"{origin}: source '{config.name}' is defined twice; names must be unique")
        seen.add(config.name)
        sources[config.name] = config
    return sources


def file_formats(sources: dict[str, SourceConfig]) -> dict[str, SourceFormat]:
    """What normalize needs of the sources: how each one's files are read."""
    return {name: source.file_format for name, source in sources.items()}


def secret_from_env(source: SourceConfig, setting: str, env_name: str) -> str:
    """The secret held by the environment variable a source names; never part of any message."""
    value = os.environ.get(env_name)
    if not value:
        raise SourceConfigError(f"source '{source.name}': environment variable {env_name} "
                                f"(connection.{setting}) is not set; export it before collecting")
    return value


def _parse_source(entry: Any, index: int, base_dir: Path, origin: str) -> SourceConfig:
    name = entry.get("name") if isinstance(entry, dict) else None
    if not isinstance(name, str) or not _NAME.match(name):
        label = f"{origin}: source #{index + 1}"
        if not isinstance(entry, dict):
            raise SourceConfigError(f"{label}: must be a mapping with name, kind, ...")
        raise SourceConfigError(f"{label}: name: is required and must be letters, digits, '.', '_' or '-'"
                                f" (got {name!r})")
    top = Section(entry, f"{origin}: source '{name}'")
    top.get("name", str)
    kind_name = top.get("kind", str, "upload")
    kind = registry.get(kind_name)
    if kind is None:
        raise top.fail("kind", f"must be one of {', '.join(registry.kinds())}, got {kind_name!r}")
    file_format = read_format(top, name)
    problem = kind.check_format(file_format)
    if problem:
        raise top.fail("format", problem)
    if kind.needs_connection and not top.has("connection"):
        raise top.fail("connection", f"is required for a {kind_name} source")
    conn = top.section("connection")
    connection = kind.parse_settings(conn, base_dir)
    if not isinstance(connection, kind.settings_schema):  # a mistake in the kind's module, not in the file
        raise TypeError(f"collector kind '{kind_name}' ({type(kind).__module__}): parse_settings returned "
                        f"{type(connection).__name__}, not its settings_schema {kind.settings_schema.__name__}")
    conn.done()
    top.done()
    return SourceConfig(name=name, kind=kind_name, file_format=file_format, connection=connection)


__all__ = ["DEFAULT_SOURCE", "SourceConfig", "SourceConfigError", "default_source", "file_formats",
           "load_sources", "parse_sources", "secret_from_env"]
