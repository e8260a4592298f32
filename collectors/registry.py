"""The collector registry: what a collector kind is, and which kinds there are.

A kind is what a source's `kind:` names in the sources file (docs/sources.md). Each kind is one
module holding a `CollectorKind` subclass: the schema of its `connection:` settings and how to
read them, how to collect (land what is waiting), what its sensor keys a run on, and a
description. The module registers an instance (`register(MyKind())`) when imported.

Everything that runs collectors loops over the registry, with no per-kind code: the sources file
parser (collectors/sources.py), `billing.runner.collect`, and the Dagster source assets and
sensors (pipelines/). Adding a kind is one module, plus its registration: its name in `BUILTIN`
(kinds shipped here, imported on first use), or, for a kind kept in another installed package, an
entry point in the group `billing.collectors` naming its module (loaded on first use too), or an
import of the module before the sources file is read.
"""

from __future__ import annotations

import hashlib
import importlib
import importlib.metadata
import json
import re
import threading
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar, TypeVar

from formats import Section, SourceFormat

if TYPE_CHECKING:
    from core.config import Settings
    from warehouse.store import Warehouse

    from .landing import Landed
    from .sources import SourceConfig

T = TypeVar("T")

BUILTIN = ("collectors.upload", "collectors.sftp", "collectors.api")
# Other packages' kinds: `[project.entry-points."billing.collectors"] localdir = "mypackage.localdir:KIND"`
ENTRY_POINTS = "billing.collectors"
_KIND_NAME = re.compile(r"^[a-z][a-z0-9_]*$")


@dataclass(frozen=True)
class CollectContext:
    """What one collection of one source gets: the source, where to land, and a way to tell the user."""

    source: SourceConfig
    warehouse: Warehouse
    settings: Settings
    say: Callable[[str], None]

    @property
    def landing(self) -> Path:
        return self.settings.landing


@dataclass(frozen=True)
class Fingerprint:
    """What a sensor saw at a source: `key` None means nothing to collect (the tick is skipped).

    The same key again means the same run (Dagster skips a run_key it has seen), so it must change
    exactly when there is something new to collect. `seen` says what was looked at, for the UI.
    """

    key: str | None
    seen: str
    files: int | None = None


class CollectorKind:
    """One kind of collector. Subclass it, fill in the class attributes and methods, and `register` it."""

    name: ClassVar[str]  # the `kind:` in the sources file (lower case, digits, _)
    description: ClassVar[str]  # one line: where this kind collects from
    settings_schema: ClassVar[type]  # the (frozen) dataclass its `connection:` is read into
    needs_connection: ClassVar[bool] = True  # False: `connection:` may be left out (all settings have defaults)
    sensor_interval_seconds: ClassVar[int] = 300  # how often its sensor looks
    fingerprint_doc: ClassVar[str] = "run_key: what the sensor saw"  # how the sensor keys runs, for the UI

    def parse_settings(self, connection: Section, base_dir: Path) -> Any:
        """Read `connection:` into a `settings_schema` instance; raise `connection.fail(key, what to do)`.

        Every key must be read (`connection.get`, ...): the caller refuses the others as unknown.
        Relative paths are read from `base_dir`, the sources file's folder.
        """
        raise NotImplementedError

    def check_format(self, file_format: SourceFormat) -> str | None:
        """Why this kind cannot land files of this format (the `format:` key's error), or None."""
        return None

    def collect(self, context: CollectContext) -> list[Landed]:
        """Land what is waiting at `context.source` (collectors.landing.land_file); one poll."""
        raise NotImplementedError

    def fingerprint(self, source: SourceConfig, settings: Settings) -> Fingerprint:
        """Look, cheaply and within a bounded time, for something to collect: what a sensor keys on.

        Raising skips the sensor's tick with the error; the collection itself reports failures fully.
        """
        raise NotImplementedError

    def watches(self, source: SourceConfig) -> bool:
        """Whether the source gets a sensor (False: there is nothing it could ever see)."""
        return True

    def where(self, source: SourceConfig) -> str:
        """Where this source collects from, for the Dagster UI (never a secret)."""
        return self.description


_kinds: dict[str, CollectorKind] = {}
_lock = threading.Lock()
_builtin_loaded = False

K = TypeVar("K", bound=CollectorKind)


def register(kind: K) -> K:
    """Make `kind` available to the sources file under `kind.name`; returns it.

    Registering another kind under a name already taken is refused (a second import of the same
    module re-registers its own class, which is allowed).
    """
    name = getattr(kind, "name", None)
    if not isinstance(name, str) or not _KIND_NAME.match(name):
        raise ValueError(f"collector kind {kind!r}: name must be lower-case letters, digits and _, got {name!r}")
    for attribute in ("description", "settings_schema"):
        if not hasattr(kind, attribute):
            raise ValueError(f"collector kind '{name}': give it a {attribute}")
    with _lock:
        known = _kinds.get(name)
        if known is not None and type(known).__qualname__ != type(kind).__qualname__:
            raise ValueError(f"collector kind '{name}' is already registered by {type(known).__module__}."
                             f"{type(known).__qualname__}; give the new kind another name")
        _kinds[name] = kind
    return kind


def unregister(name: str) -> None:
    """Forget a kind (tests that register their own)."""
    with _lock:
        _kinds.pop(name, None)


def _load_builtin() -> None:
    global _builtin_loaded
    if not _builtin_loaded:
        for module in BUILTIN:
            importlib.import_module(module)  # each registers its kind
        for entry in importlib.metadata.entry_points(group=ENTRY_POINTS):
            try:
                loaded = entry.load()  # "package.module" registers its kind; "package.module:KIND" names it
                if isinstance(loaded, CollectorKind) and _kinds.get(loaded.name) is not loaded:
                    register(loaded)
            except Exception as exc:
                raise ImportError(f"collector kind '{entry.name}' (entry point {entry.value} in group "
                                  f"{ENTRY_POINTS}) cannot be loaded: {type(exc).__name__}: {exc}; fix or "
                                  "uninstall the package that declares it") from exc
        _builtin_loaded = True


def kinds() -> dict[str, CollectorKind]:
    """Every registered kind by name: the built-in ones first, in BUILTIN's order."""
    _load_builtin()
    order = {module.rsplit(".", 1)[-1]: i for i, module in enumerate(BUILTIN)}
    with _lock:
        return dict(sorted(_kinds.items(), key=lambda item: (order.get(item[0], len(order)), item[0])))


def get(name: str) -> CollectorKind | None:
    return kinds().get(name)


def kind_of(source: SourceConfig) -> CollectorKind:
    kind = get(source.kind)
    if kind is None:
        raise ValueError(f"source '{source.name}': no collector kind '{source.kind}' is registered "
                         f"(known: {', '.join(kinds())})")
    return kind


# -- helpers the kinds share ------------------------------------------------------------------------

def digest(listing: Any) -> str:
    """A stable sha256 of a listing (sorted keys), for sensor fingerprints."""
    return hashlib.sha256(json.dumps(listing, sort_keys=True, default=str).encode()).hexdigest()


def within(seconds: float, fn: Callable[..., T], *args: Any) -> T:
    """fn(*args) in a helper thread, given up after `seconds` (the thread is left to finish on its own).

    A sensor's look must never hang the Dagster daemon on a hung disk or server.
    """
    result: dict[str, Any] = {}

    def target() -> None:
        try:
            result["value"] = fn(*args)
        except BaseException as exc:  # handed to the caller below
            result["error"] = exc

    thread = threading.Thread(target=target, name="sensor-listing", daemon=True)
    thread.start()
    thread.join(seconds)
    if thread.is_alive():
        raise TimeoutError(f"no answer within {seconds:g}s")
    if "error" in result:
        raise result["error"]
    return result["value"]


__all__ = ["BUILTIN", "CollectContext", "CollectorKind", "Fingerprint", "digest", "get", "kind_of", "kinds",
           "register", "unregister", "within"]
