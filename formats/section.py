"""Reading one mapping of the sources file: each key type-checked, unknown keys refused.

Shared by the file-format settings (formats/) and each collector kind's `connection:` settings
(collectors/), so every mistake reads the same way: the file, the source, the dotted key, and what
to write instead (`sources.yaml: source 'acme': connection.port: must be a whole number, got '22'`).
"""

from __future__ import annotations

import re
from datetime import date
from pathlib import Path
from typing import Any

_ENV_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
# Keys that would put a secret in the file; each maps to the setting to use instead.
SECRET_KEYS = {"password": "password_env", "token": "token_env", "api_key": "api_key_env",
               "key_passphrase": "key_passphrase_env", "passphrase": "key_passphrase_env",
               "secret": "token_env or api_key_env", "private_key": "key_file"}


class SourceConfigError(ValueError):
    """The sources file is wrong; the message names the source and the field."""


class Section:
    """Reads one mapping of the file, type-checking each key and refusing unknown ones.

    `where` names the file and the source (`sources.yaml: source 'acme'`), `prefix` the mapping
    inside it (`connection.`); `done()` refuses every key nobody read.
    """

    def __init__(self, data: Any, where: str, prefix: str = ""):
        if not isinstance(data, dict):
            raise SourceConfigError(f"{where}: {prefix.rstrip('.') or 'entry'} must be a mapping")
        self.data = dict(data)
        self.where = where
        self.prefix = prefix
        self.used: set[str] = set()

    def fail(self, key: str, message: str) -> SourceConfigError:
        return SourceConfigError(f"{self.where}: {self.prefix}{key}: {message}")

    def has(self, key: str) -> bool:
        return self.data.get(key) is not None

    def raw(self, key: str, default: Any = None) -> Any:
        """The value as written (None and false included), marked as read; the caller checks it."""
        self.used.add(key)
        return self.data.get(key, default)

    def get(self, key: str, kind: type | tuple[type, ...], default: Any = None, *, required: bool = False) -> Any:
        self.used.add(key)
        value = self.data.get(key)
        if value is None:
            if required:
                raise self.fail(key, "is required")
            return default
        kinds = kind if isinstance(kind, tuple) else (kind,)
        if float in kinds and isinstance(value, int) and not isinstance(value, bool):
            value = float(value)
        if int in kinds and isinstance(value, bool) or not isinstance(value, kinds):
            names = " or ".join(type_name(k) for k in kinds)
            raise self.fail(key, f"must be {names}, got {value!r}")
        if isinstance(value, str) and not value.strip():
            raise self.fail(key, "must not be empty")
        return value

    def positive(self, key: str, default: float) -> float:
        value = self.get(key, float, default)
        if value <= 0:
            raise self.fail(key, f"must be greater than 0, got {value}")
        return value

    def count(self, key: str, default: int | None, minimum: int = 1) -> int | None:
        value = self.get(key, int, default)
        if value is not None and value < minimum:
            raise self.fail(key, f"must be at least {minimum}, got {value}")
        return value

    def env(self, key: str) -> str | None:
        value = self.get(key, str)
        if value is not None and not _ENV_NAME.match(value):
            raise self.fail(key, f"must name an environment variable (letters, digits, _), got {value!r}")
        return value

    def path(self, key: str, base_dir: Path, *, required: bool = False) -> Path | None:
        """A path, relative ones read from `base_dir` (the sources file's folder)."""
        value = self.get(key, str, required=required)
        if value is None:
            return None
        path = Path(value).expanduser()
        return path if path.is_absolute() else base_dir / path

    def date(self, key: str, default: date) -> date:
        value = self.get(key, (date, str), default)  # YAML reads 2000-01-01 as a date, "2000-01-01" as text
        if isinstance(value, str):
            try:
                value = date.fromisoformat(value.strip())
            except ValueError:
                raise self.fail(key, f"must be a date such as 2000-01-01, got {value!r}") from None
        elif type(value) is not date:  # a timestamp is not a day
            raise self.fail(key, f"must be a date such as 2000-01-01, got {value!r}")
        return value

    def str_map(self, key: str) -> dict[str, str]:
        value = self.get(key, dict, {})
        out = {}
        for k, v in value.items():
            if not isinstance(k, str) or isinstance(v, (dict, list)) or v is None:
                raise self.fail(key, f"must map names to plain values; {k!r}: {v!r} is not")
            out[k] = str(v).lower() if isinstance(v, bool) else str(v)
        return out

    def section(self, key: str) -> Section:
        self.used.add(key)
        return Section(self.data.get(key) or {}, self.where, f"{self.prefix}{key}.")

    def done(self) -> None:
        for key in self.data:
            if key in SECRET_KEYS and key not in self.used:
                raise self.fail(key, f"secrets are never written in the sources file; put it in an environment "
                                     f"variable and name that variable with '{SECRET_KEYS[key]}'")
        unknown = [str(k) for k in self.data if k not in self.used]
        if unknown:
            raise self.fail(unknown[0], f"unknown setting; expected one of {', '.join(sorted(self.used))}")


def type_name(kind: type) -> str:
    return {str: "text", int: "a whole number", float: "a number", bool: "true or false",
            dict: "a mapping", list: "a list", date: "a date"}.get(kind, kind.__name__)
