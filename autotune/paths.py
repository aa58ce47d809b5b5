"""Where autotune's files are: the built-in targets and search spaces (package data, so an
installed wheel has them), the user's own folders of them, and the cache of what is built at
first use (never written into the checkout or site-packages)."""

from __future__ import annotations

import contextlib
import hashlib
import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from autotune.errors import InputError

PACKAGE_DIR = Path(__file__).resolve().parent
ROOT = PACKAGE_DIR.parent  # the checkout when running from one, else site-packages
ZOO_MODELS_DIR = PACKAGE_DIR / "zoo" / "models"
HOME_ENV = "AUTOTUNE_HOME"  # a folder with the user's targets/ and search_spaces/
CACHE_ENV = "AUTOTUNE_CACHE_DIR"


@dataclass(frozen=True)
class DataKind:
    """One kind of named TOML file (targets, search spaces) and where users add their own."""

    what: str  # in messages: "unknown target 'x'"
    folder: str  # the folder name under AUTOTUNE_HOME, the working directory and the package
    env: str  # the folder the user names (``option`` sets it for one command)
    option: str
    builtin: Path


TARGETS = DataKind("target", "targets", "AUTOTUNE_TARGETS_DIR", "--targets-dir",
                   PACKAGE_DIR / "targets")
SPACES = DataKind("search space", "search_spaces", "AUTOTUNE_SPACES_DIR", "--spaces-dir",
                  PACKAGE_DIR / "search_spaces")


@dataclass(frozen=True)
class NamedFile:
    """A target or space file found by name, and which folder it came from."""

    name: str
    path: Path
    origin: str  # AUTOTUNE_TARGETS_DIR, AUTOTUNE_HOME, ./targets or built-in


def search_folders(kind: DataKind) -> list[tuple[Path, str]]:
    """The folders a NAME is looked up in, first match wins: the one the user named
    (``--targets-dir``), ``$AUTOTUNE_HOME/targets``, ``./targets``, the built-in ones."""
    folders = []
    named = os.environ.get(kind.env)
    if named:
        folders.append((_existing_dir(named, f"{kind.env} ({kind.option})"), kind.env))
    home = os.environ.get(HOME_ENV)
    if home:
        folder = _existing_dir(home, HOME_ENV) / kind.folder
        if folder.is_dir():
            folders.append((folder, HOME_ENV))
    local = Path(kind.folder).resolve()
    if local.is_dir() and local != kind.builtin:
        folders.append((local, f"./{kind.folder}"))
    folders.append((kind.builtin, "built-in"))
    return folders


def named_files(kind: DataKind) -> dict[str, NamedFile]:
    """Every file of this kind by name, each from the first folder that has it."""
    found: dict[str, NamedFile] = {}
    for folder, origin in search_folders(kind):
        for path in sorted(folder.glob("*.toml")):
            found.setdefault(path.stem, NamedFile(path.stem, path, origin))
    return dict(sorted(found.items()))


def resolve_named_file(name_or_path: str, kind: DataKind) -> Path:
    """A NAME (looked up in ``search_folders``) or a path to a TOML file."""
    candidate = Path(name_or_path)
    if candidate.suffix == ".toml" or "/" in name_or_path:
        if not candidate.is_file():
            raise InputError(f"{name_or_path}: {kind.what} file not found")
        return candidate
    files = named_files(kind)
    if name_or_path not in files:
        raise InputError(f"unknown {kind.what} {name_or_path!r} (known: {', '.join(files)}; "
                         f"a file NAME.toml in {kind.option}, ${HOME_ENV}/{kind.folder} or "
                         f"./{kind.folder} adds one)")
    return files[name_or_path].path


@contextlib.contextmanager
def user_folders(targets: str | None, spaces: str | None) -> Iterator[None]:
    """``--targets-dir``/``--spaces-dir`` for one command: they set the variables every
    lookup (and every child process) reads, and put them back afterwards."""
    saved = {kind.env: os.environ.get(kind.env) for kind in (TARGETS, SPACES)}
    try:
        for kind, value in ((TARGETS, targets), (SPACES, spaces)):
            if value is not None:
                os.environ[kind.env] = str(_existing_dir(value, kind.option))
        yield
    finally:
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value


def _existing_dir(value: str, source: str) -> Path:
    path = Path(value).expanduser().resolve()
    if not path.is_dir():
        raise InputError(f"{source} {value}: not a directory")
    return path


def user_cache_dir() -> Path:
    """``$AUTOTUNE_CACHE_DIR``, else ``$XDG_CACHE_HOME/autotune``, else
    ``~/.cache/autotune``: models built at first use and runtime environments, shared by
    every run of this user wherever autotune is installed or started."""
    override = os.environ.get(CACHE_ENV)
    if override:
        return Path(override).expanduser()
    xdg = os.environ.get("XDG_CACHE_HOME")
    return (Path(xdg) if xdg else Path.home() / ".cache") / "autotune"


def import_root() -> Path:
    """A folder to put on a child's PYTHONPATH so that it imports this autotune and nothing
    else: the checkout, or for an installed package a folder in the user cache holding only
    a link to it (site-packages itself would shadow a runtime environment's packages)."""
    if (ROOT / "pyproject.toml").is_file():
        return ROOT
    key = hashlib.blake2b(str(PACKAGE_DIR).encode(), digest_size=6).hexdigest()
    folder = user_cache_dir() / "import" / key
    link = folder / "autotune"
    if not link.is_symlink():
        folder.mkdir(parents=True, exist_ok=True)
        with contextlib.suppress(FileExistsError):  # another process made it meanwhile
            link.symlink_to(PACKAGE_DIR, target_is_directory=True)
    return folder
