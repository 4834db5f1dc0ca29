"""The distribution as a user gets it: build, check, install the wheel in a fresh venv, run the example.

``python -m build`` makes the sdist and (from it) the wheel, ``twine check --strict`` passes both, the
wheel is installed with its ``django`` extra (Django from the package index) into a new virtual
environment without the system's site-packages, outside the checkout and not editable. Then the
example project (``config/`` and ``manage.py`` copied to a temporary folder) runs on that venv's
Python against the session's real memcached: ``manage.py check``, ``migrate``, ``makemigrations
--check``, and a probe that makes one cached request twice (a miss, then a hit in memcached), renders
the dashboard and every template of ``django_regions``, finds every static file and asks Beaker for
the ``beaker.backends`` entry point of every built-in backend. The files of both packages in the checkout
(minus ``__pycache__``) must all be in the installed wheel: a template, static file, migration or
``py.typed`` left out of the package data fails here.

Select it with ``-m distribution``; it takes 30-60 s (two isolated builds, one venv, one install).
Two variables widen it by hand: ``DIST_TEST_PYTHON`` (the interpreter the venv is made from, e.g.
``python3.13``; default: this one) and ``DIST_TEST_DJANGO`` (a requirement such as ``django<5``
installed beside the wheel, to try the oldest Django the classifiers name).
"""

from __future__ import annotations

import json
import os
import random
import shutil
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

pytestmark = pytest.mark.distribution

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("regions", "django_regions")
DIST_NAME = "cache-regions"

# Run by the fresh venv's Python in the copied example project (DJANGO_SETTINGS_MODULE set).
PROBE = r"""
import importlib.metadata as md
import json
import sys

import django

django.setup()

import beaker.cache
from django.contrib.staticfiles import finders
from django.template.loader import get_template
from django.test import Client

import django_regions
import regions
from regions.backends import BUILTIN

wanted = json.loads(sys.argv[1])
dist = md.distribution(wanted["dist"])
client = Client()
price = [client.get(f"/api/price/{wanted['pk']}/") for _ in range(2)]
dashboard = client.get("/regions/")
clsmap = {}
for name in [f"regions.{name}" for name in BUILTIN]:
    try:
        cls = beaker.cache.clsmap[name]
        clsmap[name] = f"{cls.__module__}:{cls.__qualname__}"
    except Exception as exc:  # reported, and the test says which one
        clsmap[name] = f"{type(exc).__name__}: {exc}"
templates = {}
for name in wanted["templates"]:
    try:
        templates[name] = get_template(name).origin.name
    except Exception as exc:
        templates[name] = f"{type(exc).__name__}: {exc}"
print(json.dumps({
    "sys_path": sys.path,
    "modules": {"regions": regions.__file__, "django_regions": django_regions.__file__},
    "version": dist.version,
    "python": sys.version.split()[0],
    "django": django.__version__,
    "__version__": regions.__version__,
    "direct_url": dist.read_text("direct_url.json"),
    "files": sorted(str(f) for f in dist.files or () if f.parts[0] in ("regions", "django_regions")),
    "builtin": BUILTIN,
    "entry_points": {ep.name: ep.value for ep in dist.entry_points if ep.group == "beaker.backends"},
    "clsmap": clsmap,
    "templates": templates,
    "static": {name: finders.find(name) for name in wanted["static"]},
    "price": [[r.status_code, r.json()] for r in price],
    "dashboard": [dashboard.status_code, dashboard.content.decode(errors="replace")],
}))
"""


def run(cmd: list[str], *, cwd: Path, env: dict[str, str] | None = None, timeout: float = 300) -> str:
    """Run ``cmd``; fail with its output when it exits non-zero."""
    proc = subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout)
    if proc.returncode != 0:
        pytest.fail(
            f"{' '.join(map(str, cmd))} exited {proc.returncode}\n--- stdout\n{proc.stdout[-4000:]}"
            f"\n--- stderr\n{proc.stderr[-4000:]}",
            pytrace=False,
        )
    return proc.stdout


def source_files(package: str) -> list[str]:
    """Every file of ``package`` in the checkout, as a path relative to ROOT (no bytecode)."""
    base = ROOT / package
    return sorted(
        p.relative_to(ROOT).as_posix()
        for p in base.rglob("*")
        if p.is_file() and "__pycache__" not in p.parts and p.suffix not in (".pyc", ".pyo")
    )


def clean_env(**extra: str) -> dict[str, str]:
    """This machine's environment without anything pointing at the checkout, its venv or the tests
    (PYTHONPATH, VIRTUAL_ENV, DJANGO_*, REGIONS_*, PYTEST_*: the example hides the toolbar under tests)."""
    drop = ("PYTHONPATH", "PYTHONHOME", "VIRTUAL_ENV", "DJANGO_", "REGIONS_", "PYTEST_")
    return {k: v for k, v in os.environ.items() if not k.startswith(drop)} | extra


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """The sdist and the wheel ``python -m build`` makes of the checkout (the wheel from the sdist)."""
    out = tmp_path_factory.mktemp("dist")
    run([sys.executable, "-m", "build", "--outdir", str(out), str(ROOT)], cwd=ROOT, env=clean_env())
    sdists, wheels = sorted(out.glob("*.tar.gz")), sorted(out.glob("*.whl"))
    assert len(sdists) == 1 and len(wheels) == 1, sorted(p.name for p in out.iterdir())
    return {"sdist": sdists[0], "wheel": wheels[0]}


def test_twine_check_passes(built: dict[str, Path]) -> None:
    output = run(
        [sys.executable, "-m", "twine", "check", "--strict", str(built["sdist"]), str(built["wheel"])],
        cwd=built["wheel"].parent,
    )
    assert output.count("PASSED") == 2, output


def test_classifiers_are_known_to_pypi() -> None:
    """PyPI refuses an upload with a classifier it does not know; twine check does not look."""
    from trove_classifiers import classifiers

    declared = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["classifiers"]
    assert [c for c in declared if c not in classifiers] == []


def test_wheel_runs_the_example_in_a_fresh_venv(
    built: dict[str, Path], memcached_server: str, memcached_stats, tmp_path: Path
) -> None:
    pyproject = tomllib.loads((ROOT / "pyproject.toml").read_text())
    entry_points = pyproject["project"]["entry-points"]["beaker.backends"]
    assert pyproject["project"]["name"] == DIST_NAME
    assert built["wheel"].name.startswith(DIST_NAME.replace("-", "_") + "-")

    # A fresh venv (no system site-packages), outside the checkout; the wheel with its django extra.
    # The venv gets no pip of its own (ensurepip costs ~10 s here): this pip installs into it.
    venv = tmp_path / "venv"
    base = os.environ.get("DIST_TEST_PYTHON") or sys.executable
    run([base, "-m", "venv", "--without-pip", str(venv)], cwd=tmp_path, env=clean_env())
    python = venv / "bin" / "python"
    pins = [os.environ["DIST_TEST_DJANGO"]] if os.environ.get("DIST_TEST_DJANGO") else []
    install = [sys.executable, "-m", "pip", "--python", str(python), "install", "-q"]
    run([*install, f"{built['wheel']}[django]", *pins], cwd=tmp_path, env=clean_env())
    cfg = (venv / "pyvenv.cfg").read_text()
    assert "include-system-site-packages = false" in cfg, cfg

    # The example project, copied away from the checkout.
    project = tmp_path / "project"
    shutil.copytree(ROOT / "config", project / "config", ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copy2(ROOT / "manage.py", project / "manage.py")
    env = clean_env(
        DJANGO_SETTINGS_MODULE="config.settings",
        REGIONS_MEMCACHED=memcached_server,
        REGIONS_VAR_DIR=str(tmp_path / "var"),
        DJANGO_DEBUG="1",  # the example opens its dashboard to anyone only in DEBUG
    )
    manage = [str(python), "manage.py"]
    check = run([*manage, "check"], cwd=project, env=env)
    assert "System check identified no issues" in check, check
    run([*manage, "migrate", "--noinput"], cwd=project, env=env)
    run([*manage, "makemigrations", "--check", "--dry-run"], cwd=project, env=env)  # none missing

    source = [f for package in PACKAGES for f in source_files(package)]
    templates_root = "django_regions/templates/"
    static_root = "django_regions/static/"
    pk = random.randrange(10**9, 10**10)  # a key no other test of this session's memcached wrote
    wanted = {
        "dist": DIST_NAME,
        "pk": pk,
        "templates": [f[len(templates_root) :] for f in source if f.startswith(templates_root)],
        "static": [f[len(static_root) :] for f in source if f.startswith(static_root)],
    }
    before = memcached_stats()
    probe = project / "probe.py"  # beside manage.py: the script's folder is on sys.path
    probe.write_text(PROBE)
    found = json.loads(run([str(python), str(probe), json.dumps(wanted)], cwd=project, env=env))
    after = memcached_stats()

    print(f"fresh venv: Python {found['python']}, Django {found['django']}, {DIST_NAME} {found['version']}")
    # Installed from the wheel into the venv, not the checkout, not editable.
    site = str(venv / "lib")
    for name, path in found["modules"].items():
        assert path.startswith(site), f"{name} imported from {path}, not the fresh venv"
    assert not any(p.startswith(str(ROOT)) for p in found["sys_path"]), found["sys_path"]
    assert found["direct_url"] is None or '"editable": true' not in found["direct_url"], found["direct_url"]
    assert found["version"] == found["__version__"], "the version must come from one place"

    # Every file of both packages made it into the wheel (templates, static, migrations, py.typed).
    installed = set(found["files"])
    missing = [f for f in source if f not in installed]
    assert not missing, f"in the checkout but not in the wheel: {missing}"
    assert "regions/py.typed" in installed and "django_regions/py.typed" in installed

    # An entry point for each built-in backend (regions falls back to importing them directly, so
    # a request alone would not notice one missing), as pyproject.toml declares them; Beaker finds each.
    expected = {f"regions.{name}": target for name, target in found["builtin"].items()}
    assert found["entry_points"] == expected, "beaker.backends entry points of the installed wheel"
    assert entry_points == expected, "pyproject.toml's beaker.backends entry points"
    for name, target in expected.items():
        assert found["clsmap"][name] == target, f"beaker.cache.clsmap[{name!r}]: {found['clsmap'][name]}"

    for name, origin in found["templates"].items():
        assert origin.startswith(site), f"template {name}: {origin}"
    for name, origin in found["static"].items():
        assert origin and origin.startswith(site), f"static file {name}: {origin}"

    # One cached request twice: computed and stored in memcached, then a hit.
    (status1, first), (status2, second) = found["price"]
    assert (status1, status2) == (200, 200), found["price"]
    assert first["pk"] == second["pk"] == pk
    assert first["price_cents"] == second["price_cents"]
    assert first["cache"]["backend"] == "memcached", first["cache"]
    assert (first["cache"]["misses"], first["cache"]["hits"]) == (1, 0), first["cache"]
    assert (second["cache"]["misses"], second["cache"]["hits"]) == (1, 1), second["cache"]
    assert int(after["cmd_set"]) > int(before["cmd_set"]), "nothing was stored in memcached"
    assert int(after["get_hits"]) > int(before["get_hits"]), "no hit was read from memcached"

    # The dashboard renders from the wheel's templates (base.html and dashboard.html).
    status, page = found["dashboard"]
    assert status == 200, page[-2000:]
    assert "functions" in page and "memcached" in page, page[-2000:]
