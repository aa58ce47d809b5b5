"""Installed anywhere: built-in targets and spaces as package data, the user's folders before
them, caches in the user cache, and a child that imports this autotune and nothing else."""

from __future__ import annotations

import fnmatch
import json
import subprocess
import sys
import tomllib

import pytest

from autotune import __version__, paths
from autotune.cli import main
from autotune.errors import InputError
from autotune.paths import SPACES, TARGETS, named_files, user_cache_dir
from autotune.space import load_space
from autotune.target import load_target
from autotune.zoo.cache import zoo_cache_dir

SMOKE = (SPACES.builtin / "smoke.toml").read_text()
HOST = (TARGETS.builtin / "host-cpu.toml").read_text()


@pytest.fixture(autouse=True)
def no_user_folders(monkeypatch):
    """Whatever the machine running the tests has set, each test names its own folders."""
    for name in (TARGETS.env, SPACES.env, paths.HOME_ENV, paths.CACHE_ENV, "XDG_CACHE_HOME"):
        monkeypatch.delenv(name, raising=False)


def _space(folder, name, description):
    folder.mkdir(parents=True, exist_ok=True)
    (folder / f"{name}.toml").write_text(
        SMOKE.replace('"Two configs (fp32 and one int8), for tests and quick checks"',
                      f'"{description}"'))


@pytest.mark.readme_claim("the built-in targets and search spaces ship inside the package")
def test_every_built_in_file_is_package_data():
    """The wheel carries what pyproject's package-data globs match: every built-in file."""
    pyproject = tomllib.loads((paths.ROOT / "pyproject.toml").read_text())
    globs = pyproject["tool"]["setuptools"]["package-data"]["autotune"]
    for kind in (TARGETS, SPACES):
        files = sorted(kind.builtin.glob("*"))
        assert files
        for path in files:
            relative = path.relative_to(paths.PACKAGE_DIR).as_posix()
            assert any(fnmatch.fnmatch(relative, pattern) for pattern in globs), relative


def test_built_in_files_are_found_outside_the_checkout(workspace, capsys):
    assert load_space("default").path == SPACES.builtin / "default.toml"
    assert load_target("host-cpu").path.parent == TARGETS.builtin
    assert main(["spaces", "--json"]) == 0
    listed = {row["name"]: row for row in json.loads(capsys.readouterr().out)}
    assert {"default", "smoke", "full"} <= set(listed)
    assert {row["from"] for row in listed.values()} == {"built-in"}


@pytest.mark.readme_claim("a NAME for --target or --space: --targets-dir, AUTOTUNE_HOME, "
                          "./targets, then built-in")
def test_named_folder_then_home_then_working_directory_then_built_in(workspace, monkeypatch,
                                                                     capsys):
    named, home = workspace / "named", workspace / "home"
    _space(named, "smoke", "from the named folder")
    _space(home / "search_spaces", "smoke", "from home")
    _space(home / "search_spaces", "mine", "home only")
    _space(workspace / "search_spaces", "mine", "working directory")
    _space(workspace / "search_spaces", "local", "working directory only")
    monkeypatch.setenv(paths.HOME_ENV, str(home))

    assert load_space("smoke").description == "from home"
    assert load_space("mine").description == "home only"
    assert load_space("local").description == "working directory only"
    assert main(["spaces", "--spaces-dir", str(named), "--json"]) == 0
    listed = {row["name"]: row for row in json.loads(capsys.readouterr().out)}
    assert listed["smoke"]["description"] == "from the named folder"
    assert {name: listed[name]["from"] for name in ("smoke", "mine", "local", "default")} == {
        "smoke": SPACES.env, "mine": paths.HOME_ENV, "local": "./search_spaces",
        "default": "built-in"}
    # The option held for that command only.
    assert load_space("smoke").description == "from home"


@pytest.mark.readme_claim("autotune targets and spaces list every name with where it came from")
def test_own_target_listed_with_its_folder(workspace, capsys):
    mine = workspace / "boards"
    mine.mkdir()
    (mine / "my-board.toml").write_text(HOST.replace("spare_cores = 1", "spare_cores = 0"))
    assert main(["--targets-dir", str(mine), "targets", "--json"]) == 0
    rows = json.loads(capsys.readouterr().out)
    assert {row["from"] for row in rows if row["target"] == "my-board"} == {TARGETS.env}
    assert {row["from"] for row in rows if row["target"] == "host-cpu"} == {"built-in"}


@pytest.mark.readme_claim("a named folder that does not exist is an input error (exit 2)")
def test_a_folder_that_does_not_exist_is_a_clear_error(workspace, monkeypatch, capsys):
    assert main(["run", "--targets-dir", "no-such-dir"]) == 2
    assert capsys.readouterr().err.strip() == (
        "autotune: error: --targets-dir no-such-dir: not a directory")
    monkeypatch.setenv(paths.HOME_ENV, str(workspace / "missing"))
    with pytest.raises(InputError, match=f"{paths.HOME_ENV} .*missing: not a directory"):
        named_files(SPACES)
    monkeypatch.delenv(paths.HOME_ENV)
    with pytest.raises(InputError, match="unknown target 'nope' .*host-cpu.*--targets-dir"):
        load_target("nope")


@pytest.mark.readme_claim("zoo models and --runtime environments go to the user cache, never the "
                          "checkout")
def test_caches_go_to_the_user_cache(workspace, monkeypatch):
    monkeypatch.setenv("HOME", str(workspace / "me"))
    assert user_cache_dir() == workspace / "me" / ".cache" / "autotune"
    monkeypatch.setenv("XDG_CACHE_HOME", str(workspace / "xdg"))
    assert zoo_cache_dir() == workspace / "xdg" / "autotune" / "zoo"
    monkeypatch.setenv(paths.CACHE_ENV, str(workspace / "mine"))
    assert user_cache_dir() == workspace / "mine"


def test_an_installed_package_gives_children_only_itself(workspace, monkeypatch):
    """Installed, ROOT is site-packages: the child's PYTHONPATH holds a link to the package
    alone, so a runtime environment's own packages are not shadowed."""
    monkeypatch.setattr(paths, "ROOT", workspace / "site-packages")
    monkeypatch.setenv(paths.CACHE_ENV, str(workspace / "cache"))
    folder = paths.import_root()
    assert [p.name for p in folder.iterdir()] == ["autotune"]
    assert paths.import_root() == folder  # made once
    child = subprocess.run([sys.executable, "-I", "-c",
                            f"import sys; sys.path.insert(0, {str(folder)!r}); "
                            "import autotune.paths as p; print(p.PACKAGE_DIR)"],
                           capture_output=True, text=True, cwd=workspace, check=True)
    assert child.stdout.strip() == str(paths.PACKAGE_DIR)


@pytest.mark.readme_claim("autotune --version prints the package version, and the commit from a "
                          "git checkout")
def test_version(capsys):
    with pytest.raises(SystemExit) as exit_code:
        main(["--version"])
    assert exit_code.value.code == 0
    line = capsys.readouterr().out.strip()
    assert line.startswith(f"autotune {__version__}")
    assert ("(commit " in line) == (paths.ROOT / ".git").exists()
