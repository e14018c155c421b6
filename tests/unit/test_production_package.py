"""What production runs carries no test support: the installed package imports none of it, and the images copy
from deploy/ only what their containers run."""
from __future__ import annotations

import ast
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
PRODUCTION_PACKAGES = ("shared", "services")  # pyproject's [tool.setuptools.packages.find]
TEST_ONLY = ("tests", "testcontainers", "pytest", "deploy.embedded_db", "deploy.local")


def imported_modules(source: Path) -> set[str]:
    tree = ast.parse(source.read_text(encoding="utf-8"), filename=str(source))
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module)
    return names


def test_the_installed_packages_import_no_test_support():
    offending = {}
    for package in PRODUCTION_PACKAGES:
        for source in sorted((ROOT / package).rglob("*.py")):
            bad = {name for name in imported_modules(source)
                   if any(name == banned or name.startswith(banned + ".") for banned in TEST_ONLY)}
            if bad:
                offending[str(source.relative_to(ROOT))] = sorted(bad)
    assert offending == {}


def test_the_images_copy_from_deploy_only_what_their_containers_run():
    for dockerfile, needed in (("Dockerfile", {"broker.py", "gunicorn.conf.py", "migrations/__init__.py"}),
                               ("console.Dockerfile", {"console.py", "gunicorn.conf.py"})):
        text = (ROOT / "deploy" / dockerfile).read_text(encoding="utf-8")
        copied = set()
        for line in text.splitlines():
            if line.startswith("COPY ") and "--from" not in line:
                copied.update(re.findall(r"\bdeploy(?:/(\S+))?(?=\s)", line))
        assert "" not in copied, f"{dockerfile} copies all of deploy/"
        assert needed <= copied, dockerfile
        assert not copied & {"embedded_db.py", "local.py", "embedded-db.txt", "migrations/local_layout.py"}, dockerfile
