"""Strict TOML reading: every key is known and typed, and an error names the file and key."""

from __future__ import annotations

import difflib
import tomllib
from pathlib import Path
from typing import Any

from autotune.errors import InputError


def read_toml(path: Path) -> dict[str, Any]:
    try:
        with open(path, "rb") as file:
            return tomllib.load(file)
    except FileNotFoundError:
        raise InputError(f"{path}: file not found") from None
    except tomllib.TOMLDecodeError as error:
        raise InputError(f"{path}: not valid TOML: {error}") from None


class Table:
    """A view of one TOML table that checks each key as it is read.

    Call ``finish()`` after reading: any key that was not read is an unknown key, which is an
    error (a typo must never be silently ignored).
    """

    def __init__(self, data: dict[str, Any], path: Path, prefix: str = "") -> None:
        self._data = data
        self._path = path
        self._prefix = prefix
        self._seen: set[str] = set()

    def __bool__(self) -> bool:
        return bool(self._data)

    def where(self, key: str) -> str:
        return f"{self._path}: {self._prefix}{key}"

    def get(self, key: str, kind: type | tuple[type, ...], default: Any = ..., *,
            choices: tuple | None = None) -> Any:
        self._seen.add(key)
        if key not in self._data:
            if default is ...:
                unread = [k for k in self._data if k not in self._seen]
                typo = difflib.get_close_matches(key, unread, n=1)
                if typo:
                    raise InputError(f"{self.where(typo[0])}: unknown key (did you mean "
                                     f"{key!r}?)")
                raise InputError(f"{self.where(key)}: required key is missing")
            return default
        value = self._data[key]
        kinds = kind if isinstance(kind, tuple) else (kind,)
        if isinstance(value, bool) and bool not in kinds:
            raise InputError(f"{self.where(key)}: expected {_names(kinds)}, got a boolean")
        if not isinstance(value, kinds):
            raise InputError(
                f"{self.where(key)}: expected {_names(kinds)}, got {type(value).__name__} {value!r}"
            )
        if choices is not None and value not in choices:
            raise InputError(f"{self.where(key)}: must be one of {', '.join(map(str, choices))}; "
                             f"got {value!r}")
        return value

    def get_list(self, key: str, choices: tuple[str, ...] | None = None,
                 default: Any = ...) -> list:
        values = self.get(key, list, default)
        for index, value in enumerate(values):
            if choices is not None and value not in choices:
                raise InputError(f"{self.where(key)}[{index}]: must be one of "
                                 f"{', '.join(map(str, choices))}; got {value!r}")
        return values

    def keys(self) -> list[str]:
        """The keys present, for a table of named tables (each still read with ``table``)."""
        return list(self._data)

    def table(self, key: str, required: bool = False) -> Table:
        value = self.get(key, dict, ... if required else {})
        return Table(value, self._path, f"{self._prefix}{key}.")

    def finish(self) -> None:
        unknown = sorted(set(self._data) - self._seen)
        if unknown:
            typo = difflib.get_close_matches(unknown[0], sorted(self._seen), n=1)
            hint = f"did you mean {typo[0]!r}?" if typo else (
                f"known: {', '.join(sorted(self._seen)) or 'none'}")
            raise InputError(f"{self.where(unknown[0])}: unknown key ({hint})")


def _names(kinds: tuple[type, ...]) -> str:
    return " or ".join({"str": "a string", "int": "an integer", "float": "a number",
                        "list": "a list", "dict": "a table"}.get(k.__name__, k.__name__)
                       for k in kinds)
