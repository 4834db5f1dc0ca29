"""A third-party BACKEND (``package.module:Class``) that cannot be loaded: the error names the
import's own failure (the module, its error, the remedy), in regions' settings check and in the
contract kit, instead of "unknown BACKEND"."""

from __future__ import annotations

import importlib
import textwrap
import uuid
from pathlib import Path
from typing import Any

import pytest

import regions
from regions.config import check
from regions.testing import BackendContract


@pytest.fixture
def package(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """An importable package of the test's own (a new name: none is left in sys.modules)."""
    root = tmp_path / "site"
    folder = root / f"thirdparty_{uuid.uuid4().hex[:8]}"
    folder.mkdir(parents=True)
    (folder / "__init__.py").write_text("")
    monkeypatch.syspath_prepend(str(root))
    return folder


def module(package: Path, name: str, source: str) -> str:
    (package / f"{name}.py").write_text(textwrap.dedent(source))
    importlib.invalidate_caches()
    return f"{package.name}.{name}"


def error(backend: str) -> regions.ConfigurationError:
    with pytest.raises(regions.ConfigurationError) as info:
        regions.CacheManager({"mine": {"BACKEND": backend}})
    assert info.value.region == "mine" and info.value.option == "BACKEND"
    [problem] = check({"mine": {"BACKEND": backend}})
    assert problem.id == "E002" and str(info.value).startswith(problem.message)
    return info.value


def test_a_package_that_is_not_installed() -> None:
    message = str(error("not_installed_pkg.cache:Manager"))
    assert message.startswith(
        "region 'mine': BACKEND 'not_installed_pkg.cache:Manager' cannot be loaded: importing "
        "'not_installed_pkg.cache' raised ModuleNotFoundError: No module named 'not_installed_pkg'; "
        "make 'not_installed_pkg.cache' importable here: install its package"
    ), message
    assert "unknown BACKEND" not in message


def test_a_missing_dependency_of_the_module(package: Path) -> None:
    path = module(package, "needs", "import a_dependency_nobody_installed\n")
    message = str(error(f"{path}:Manager"))
    assert "raised ModuleNotFoundError: No module named 'a_dependency_nobody_installed'" in message


def test_an_error_inside_the_module_is_a_problem_not_a_crash(package: Path) -> None:
    path = module(package, "broken", "raise RuntimeError('the module is broken')\n")
    assert "raised RuntimeError: the module is broken" in str(error(f"{path}:Manager"))


def test_a_missing_class_and_a_class_that_is_no_backend(package: Path) -> None:
    path = module(package, "plain", "class Manager:\n    pass\n")
    assert f"module {path!r} has no attribute 'Manger'" in str(error(f"{path}:Manger"))
    assert "is not a regions backend" in str(error(f"{path}:Manager"))


def test_a_builtin_name_misspelled_keeps_the_list() -> None:
    message = str(error("memcache"))
    assert "unknown BACKEND 'memcache'" in message and "'memcached'" in message


def test_the_contract_kit_names_the_import_failure(tmp_path: Path) -> None:
    class TestMyBackend(BackendContract):
        def config(self, tmp_path: Path, **settings: Any) -> dict[str, Any]:
            return {"BACKEND": "mypkg_not_here.cache:MyNamespaceManager", **settings}

    with pytest.raises(AssertionError, match="importing 'mypkg_not_here.cache' raised ModuleNotFoundError"):
        TestMyBackend().backend_name(tmp_path)
