"""Regenerate the hashed lock files from pyproject.toml (``make lock``).

requirements.lock        the runtime dependencies, every transitive one pinned with its
                         sha256 hashes: what the image installs (``--require-hashes``)
requirements-dev.lock    the runtime ones plus the ``test``, ``containers`` and ``dev`` extras, held to
                         the runtime lock's versions (a constraint): what ``make venv``
                         installs, so tests run on exactly the versions the image ships
requirements-build.lock  pip and pyproject's ``[build-system] requires`` (setuptools): the
                         tools that install and build the project itself

The locks are resolved for the target, CPython 3.11 on x86_64 Linux (the image's
``python:3.11-slim``), by uv (pinned in the ``dev`` extra); they list the hashes of every
file of each pinned version, so they install on other platforms too.  A locked version
stays until ``make lock UPGRADE=1`` (uv keeps the versions of the existing file).

Each lock records a digest of the pyproject.toml entries it was resolved from;
tests/unit/test_supply_chain.py fails when pyproject.toml changed without ``make lock``.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import subprocess
import sys
import tempfile
import tomllib
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
PYPROJECT = ROOT / "pyproject.toml"
TARGET_PYTHON = "3.11"
TARGET_PLATFORM = "x86_64-manylinux_2_28"
RUNTIME, DEV, BUILD = "requirements.lock", "requirements-dev.lock", "requirements-build.lock"
LOCKS = (RUNTIME, DEV, BUILD)
DEV_EXTRAS = ("test", "containers", "dev")  # what `make venv` installs
BUILD_TOOLS = ("pip",)  # besides [build-system] requires: the installer itself
DIGEST_PREFIX = "# pyproject.toml inputs sha256: "


def inputs(pyproject: dict[str, Any], lock: str) -> dict[str, Any]:
    """The pyproject.toml entries a lock is resolved from."""
    project = pyproject["project"]
    if lock == BUILD:
        return {
            "build-system.requires": pyproject["build-system"]["requires"],
            "tools": list(BUILD_TOOLS),
        }
    found: dict[str, Any] = {
        "requires-python": project["requires-python"],
        "dependencies": project["dependencies"],
    }
    if lock == DEV:
        found["optional-dependencies"] = {
            extra: project["optional-dependencies"][extra] for extra in DEV_EXTRAS
        }
    return found


def digest(pyproject: dict[str, Any], lock: str) -> str:
    blob = json.dumps(inputs(pyproject, lock), sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(blob.encode()).hexdigest()


def recorded_digest(text: str) -> str | None:
    for line in text.splitlines():
        if line.startswith(DIGEST_PREFIX):
            return line[len(DIGEST_PREFIX) :].strip()
    return None


def load_pyproject() -> dict[str, Any]:
    return tomllib.loads(PYPROJECT.read_text())


def _compile(sources: list[str], out: Path, extra: list[str], upgrade: bool) -> None:
    cmd = [
        sys.executable,
        "-m",
        "uv",
        "pip",
        "compile",
        *sources,
        "--quiet",
        "--generate-hashes",
        "--python-version",
        TARGET_PYTHON,
        "--python-platform",
        TARGET_PLATFORM,
        "--custom-compile-command",
        "make lock",
        "--output-file",
        str(out),
        *extra,
    ]
    if upgrade:
        cmd.append("--upgrade")
    subprocess.run(cmd, check=True, cwd=ROOT)


def _stamp(out: Path, value: str) -> None:
    """Put the digest line right after uv's header comment."""
    lines = [ln for ln in out.read_text().splitlines() if not ln.startswith(DIGEST_PREFIX)]
    at = next((i for i, ln in enumerate(lines) if not ln.startswith("#")), len(lines))
    lines.insert(at, DIGEST_PREFIX + value)
    out.write_text("\n".join(lines) + "\n")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--upgrade",
        action="store_true",
        help="newest versions allowed by pyproject.toml, not the locked ones",
    )
    args = parser.parse_args(argv)
    pyproject = load_pyproject()

    _compile(["pyproject.toml"], ROOT / RUNTIME, [], args.upgrade)
    _compile(
        ["pyproject.toml"],
        ROOT / DEV,
        [arg for extra in DEV_EXTRAS for arg in ("--extra", extra)] + ["--constraints", RUNTIME],
        args.upgrade,
    )
    with tempfile.TemporaryDirectory() as tmp:
        # uv reads requirements from files: the build tools as a requirements file
        source = Path(tmp) / "build-requirements.in"
        source.write_text("\n".join([*pyproject["build-system"]["requires"], *BUILD_TOOLS]) + "\n")
        _compile([str(source)], ROOT / BUILD, [], args.upgrade)
    build = (ROOT / BUILD).read_text().replace(str(source), "pyproject.toml [build-system]")
    (ROOT / BUILD).write_text(build)
    for lock in LOCKS:
        _stamp(ROOT / lock, digest(pyproject, lock))
        print(f"wrote {lock}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
