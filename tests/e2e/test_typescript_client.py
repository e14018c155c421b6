"""The documents serve a front end: TypeScript types generated from each running service's /openapi.json
(openapi-typescript, pinned in clients/typescript/package-lock.json) type-check the example client that
walks a report to its closed status and reads the league table (clients/typescript/src/walk.ts). A document
change that would break a front end fails here, with the compiler's message.

Needs Node.js 20+ and npm (CI has them); `npm ci` runs only when the lock file changed since the last one.
"""
import hashlib
import os
import shutil
import subprocess
from pathlib import Path

import pytest

pytestmark = pytest.mark.e2e
CLIENT = Path(__file__).resolve().parents[2] / "clients" / "typescript"
# Written after a successful `npm ci`: the lock file (and package.json) it installed.
INSTALLED = CLIENT / "node_modules" / ".woodpecker-installed"
NODE_MAJOR = 20


def npm() -> str:
    node, npm_path = shutil.which("node"), shutil.which("npm")
    if node is None or npm_path is None:
        pytest.fail("The TypeScript client check needs Node.js 20+ and npm on PATH (https://nodejs.org, or "
                    "`apt-get install nodejs npm`); clients/typescript holds the example it type-checks.")
    version = subprocess.run([node, "--version"], capture_output=True, text=True, check=True).stdout.strip()
    if int(version.lstrip("v").split(".")[0]) < NODE_MAJOR:
        pytest.fail(f"The TypeScript client check needs Node.js {NODE_MAJOR}+, found {version}.")
    return npm_path


def run(command: list[str], what: str, env: dict | None = None, timeout: int = 300) -> None:
    done = subprocess.run(command, cwd=CLIENT, env=env, capture_output=True, text=True, timeout=timeout)
    assert done.returncode == 0, f"{what} failed ({' '.join(command)}):\n{done.stdout[-20000:]}\n{done.stderr[-5000:]}"


def lock_digest() -> str:
    return hashlib.sha256((CLIENT / "package.json").read_bytes() + (CLIENT / "package-lock.json").read_bytes()
                          ).hexdigest()


def install(npm_path: str) -> None:
    """`npm ci` unless node_modules already holds exactly what the lock file pins."""
    digest = lock_digest()
    if INSTALLED.exists() and INSTALLED.read_text() == digest:
        return
    run([npm_path, "ci", "--no-audit", "--no-fund"], "npm ci")
    INSTALLED.write_text(digest)


def test_the_typescript_example_type_checks_against_every_document(system):
    urls, _ = system
    npm_path = npm()
    install(npm_path)
    env = {**os.environ, **{f"{service.upper()}_URL": url for service, url in urls.items()}}
    run([npm_path, "run", "--silent", "generate"], "openapi-typescript", env=env)
    run([npm_path, "run", "--silent", "check"], "tsc --noEmit")
