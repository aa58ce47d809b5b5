"""Where the built-in data folders live (next to the package, in the repository)."""

from __future__ import annotations

from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
TARGETS_DIR = ROOT / "targets"
SPACES_DIR = ROOT / "search_spaces"
ZOO_MODELS_DIR = Path(__file__).resolve().parent / "zoo" / "models"


def resolve_named_file(name_or_path: str, folder: Path, what: str) -> Path:
    """A built-in NAME (``folder/NAME.toml``) or a path to a TOML file."""
    from autotune.errors import InputError

    candidate = Path(name_or_path)
    if candidate.suffix == ".toml" or "/" in name_or_path:
        if not candidate.is_file():
            raise InputError(f"{name_or_path}: {what} file not found")
        return candidate
    path = folder / f"{name_or_path}.toml"
    if not path.is_file():
        known = ", ".join(sorted(p.stem for p in folder.glob("*.toml")))
        raise InputError(f"unknown {what} {name_or_path!r} (known: {known})")
    return path
