"""Supply chain and image (static checks, no Docker needed): the hashed lock files match
pyproject.toml and are complete; the image installs only from them, builds nothing in its
runtime stage, runs as a non-root user with a health check; compose publishes on loopback."""

from __future__ import annotations

import re
import shlex
import tomllib
from importlib import metadata
from pathlib import Path

import pytest
import yaml
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

from scripts import lock as locking

ROOT = Path(__file__).resolve().parents[2]
PYPROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text())
PROJECT = PYPROJECT["project"]
DOCKERFILE = ROOT / "Dockerfile"
HASH = re.compile(r"--hash=sha256:[0-9a-f]{64}$")


# ----------------------------------------------------------------------------- lock files
def lock_entries(name: str) -> dict[str, tuple[str, list[str]]]:
    """canonical package name -> (version, hashes) of a lock file; fails on anything that
    is not an exactly pinned, hashed requirement (editable, URL, index options, ...)."""
    text = (ROOT / name).read_text()
    logical = re.sub(r"\\\n\s*", " ", text)  # join continuation lines
    entries: dict[str, tuple[str, list[str]]] = {}
    for line in logical.splitlines():
        line = line.split(" #", 1)[0].strip()
        if not line or line.startswith("#"):
            continue
        spec, *options = line.split()
        assert not spec.startswith("-"), f"{name}: option line {line!r}"
        match = re.fullmatch(r"([A-Za-z0-9][A-Za-z0-9._-]*)==([^\s;\[]+)", spec)
        assert match, f"{name}: not an exact pin: {spec!r}"
        hashes = [o for o in options if HASH.match(o)]
        assert hashes and len(hashes) == len(options), f"{name}: {spec} needs sha256 hashes"
        key = canonicalize_name(match.group(1))
        assert key not in entries, f"{name}: {key} twice"
        entries[key] = (match.group(2), hashes)
    assert entries, f"{name} is empty"
    return entries


def pins(requirements: list[str]) -> dict[str, str]:
    """canonical name -> version of `name[extras]==version` requirements."""
    found = {}
    for text in requirements:
        req = Requirement(text)
        (spec,) = req.specifier  # pyproject pins every dependency exactly
        assert spec.operator == "==", text
        found[canonicalize_name(req.name)] = spec.version
    return found


@pytest.mark.parametrize("name", locking.LOCKS)
def test_every_lock_line_is_pinned_with_a_hash(name: str) -> None:
    lock_entries(name)  # asserts inside


@pytest.mark.parametrize("name", locking.LOCKS)
def test_locks_are_in_sync_with_pyproject(name: str) -> None:
    """Each lock records a digest of the pyproject.toml entries it was resolved from."""
    recorded = locking.recorded_digest((ROOT / name).read_text())
    assert recorded == locking.digest(PYPROJECT, name), (
        f"{name} was not resolved from the current pyproject.toml: run `make lock`"
    )


def test_runtime_pins_are_locked_at_their_version() -> None:
    lock = lock_entries(locking.RUNTIME)
    for name, version in pins(PROJECT["dependencies"]).items():
        assert name in lock, f"{name} missing from {locking.RUNTIME}"
        assert lock[name][0] == version, f"{name}: pyproject {version}, lock {lock[name][0]}"


def test_test_and_dev_pins_are_locked_at_their_version() -> None:
    lock = lock_entries(locking.DEV)
    wanted = [
        *PROJECT["dependencies"],
        *(r for extra in locking.DEV_EXTRAS for r in PROJECT["optional-dependencies"][extra]),
    ]
    for name, version in pins(wanted).items():
        assert lock.get(name, ("missing",))[0] == version, (name, version)


def test_the_web_server_and_its_stack_are_locked() -> None:
    """aiohttp serves the status page and /metrics; it and what it parses with come only
    from the lock (none is a direct dependency)."""
    lock = lock_entries(locking.RUNTIME)
    for name in ("aiohttp", "yarl", "multidict", "aiokafka", "botocore", "urllib3"):
        assert name in lock, name


def test_tests_run_on_the_image_versions() -> None:
    """requirements-dev.lock holds every runtime package at the runtime lock's version and
    hashes: what `make test` exercises is what the image ships."""
    runtime, dev = lock_entries(locking.RUNTIME), lock_entries(locking.DEV)
    for name, (version, hashes) in runtime.items():
        assert name in dev, name
        assert dev[name][0] == version, (name, version, dev[name][0])
        assert set(dev[name][1]) == set(hashes), name


def test_build_lock_pins_the_build_backend() -> None:
    lock = lock_entries(locking.BUILD)
    for text in PYPROJECT["build-system"]["requires"]:
        req = Requirement(text)
        name = canonicalize_name(req.name)
        assert name in lock and lock[name][0] in req.specifier, (text, lock.get(name))
    assert "pip" in lock


def closure(roots: list[str]) -> dict[str, set[str]]:
    """Every distribution the roots need on this interpreter (the target: CPython 3.11,
    Linux x86_64), from the installed metadata: name -> names requiring it."""
    needed: dict[str, set[str]] = {}
    todo = [(Requirement(r), "pyproject.toml") for r in roots]
    seen: set[tuple[str, frozenset[str]]] = set()
    while todo:
        req, parent = todo.pop()
        name = canonicalize_name(req.name)
        needed.setdefault(name, set()).add(parent)
        if (name, frozenset(req.extras)) in seen:
            continue
        seen.add((name, frozenset(req.extras)))
        for text in metadata.requires(name) or []:
            sub = Requirement(text)
            if sub.marker is None or any(
                sub.marker.evaluate({"extra": e}) for e in (*req.extras, "")
            ):
                todo.append((sub, name))
    return needed


@pytest.mark.parametrize("name", [locking.RUNTIME, locking.DEV])
def test_locks_are_complete(name: str) -> None:
    """Installed with --no-deps, a lock must hold every transitive dependency itself, and
    nothing else. Read from the venv's metadata, which `make venv` installs from the locks."""
    lock = lock_entries(name)
    roots = list(PROJECT["dependencies"])
    if name == locking.DEV:
        roots += [
            r for extra in locking.DEV_EXTRAS for r in PROJECT["optional-dependencies"][extra]
        ]
    for package, (version, _) in lock.items():
        assert metadata.version(package) == version, (
            f"the venv's {package} is not {name}'s {version}: run `make venv`"
        )
    needed = closure(roots)
    missing = {n: sorted(by) for n, by in needed.items() if n not in lock}
    assert not missing, f"{name} lacks dependencies: {missing}"
    assert not set(lock) - set(needed), f"{name} holds unused packages: {set(lock) - set(needed)}"


def test_make_venv_installs_from_the_locks() -> None:
    makefile = (ROOT / "Makefile").read_text()
    recipe = makefile.partition("$(VENV)/.installed:")[2].partition("\n\n")[0]
    for lock in (locking.BUILD, locking.DEV):
        assert f"--require-hashes --no-deps -r {lock}" in recipe, lock
    assert "--no-deps --no-build-isolation -e ." in recipe
    assert "scripts/lock.py" in makefile.partition("\nlock:")[2].partition("\n\n")[0]
    assert '"uv==' in (ROOT / "pyproject.toml").read_text()  # the locking tool, pinned


# ----------------------------------------------------------------------------- Dockerfile
def instructions() -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) of the Dockerfile, continuation lines joined."""
    text = re.sub(r"\\\n", " ", DOCKERFILE.read_text())
    found = []
    for line in text.splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            word, _, rest = line.partition(" ")
            found.append((word.upper(), " ".join(rest.split())))
    return found


def stages() -> list[list[tuple[str, str]]]:
    out: list[list[tuple[str, str]]] = [[]]
    for ins in instructions():
        if ins[0] == "FROM":
            out.append([])
        out[-1].append(ins)
    return out  # out[0]: global ARGs before the first FROM


def pip_installs(stage: list[tuple[str, str]]) -> list[list[str]]:
    """The argument lists of every `pip ... install` in the stage's RUN instructions."""
    found = []
    for word, args in stage:
        if word == "RUN":
            for command in re.split(r"&&|;", args):
                tokens = shlex.split(command)
                if "pip" in tokens and "install" in tokens:
                    found.append(tokens)
    return found


def test_base_image_is_a_build_arg() -> None:
    globals_, *rest = stages()
    assert ("ARG", "PYTHON_IMAGE=python:3.11-slim") in globals_
    assert len(rest) >= 2, "a build stage and a runtime stage"
    for stage in rest:
        assert stage[0][1].split()[0] == "${PYTHON_IMAGE}", stage[0]
    assert f"python:{locking.TARGET_PYTHON}-slim" in DOCKERFILE.read_text()  # what the locks target


def stage(name: str) -> list[tuple[str, str]]:
    """The build stage ``FROM ... AS <name>``."""
    (found,) = [st for st in stages()[1:] if st[0][1].endswith(f" AS {name}")]
    return found


def test_image_installs_dependencies_only_from_the_lock() -> None:
    build = stage("build")
    installs = pip_installs(build)
    from_lock = [
        t for t in installs if "-r" in t and t[t.index("-r") + 1].endswith("/" + locking.RUNTIME)
    ]
    assert from_lock, "the runtime dependencies come from requirements.lock"
    for tokens in installs:
        assert "--no-deps" in tokens, tokens
        if "-r" in tokens:
            assert "--require-hashes" in tokens and "--only-binary" in tokens, tokens
        else:  # the project itself: a wheel built here, never a name looked up on an index
            assert tokens[-1].endswith(".whl"), tokens
    assert any(w == "COPY" and locking.RUNTIME in a for w, a in build)
    assert any("--no-build-isolation" in a for w, a in build if w == "RUN"), (
        "the project is built by the locked backend, not one downloaded for the build"
    )


def test_the_native_codec_is_built_from_locked_crates_and_a_locked_maturin() -> None:
    native = stage("native")
    (maturin,) = pip_installs(native)
    assert {"--require-hashes", "--no-deps", "--only-binary"} <= set(maturin), maturin
    assert "requirements-dev.lock" in " ".join(a for w, a in native if w in ("COPY", "RUN"))
    env = " ".join(a for w, a in native if w == "ENV")
    assert "MATURIN_PEP517_ARGS=--locked" in env  # native/Cargo.lock, checksums verified
    build = stage("build")
    assert ("COPY", "--from=native /tmp/native /tmp/native") in build
    (wheel,) = [t for t in pip_installs(build) if any("/tmp/native/" in x for x in t)]
    assert "--no-deps" in wheel and wheel[-1].endswith(".whl")


def test_runtime_stage_has_no_build_tools() -> None:
    final = stages()[-1]
    assert not pip_installs(final), "the runtime stage installs nothing"
    text = " ".join(a for w, a in final if w == "RUN")
    assert "apt-get" not in text and "gcc" not in text
    assert re.search(r"pip uninstall -y( -q)? setuptools wheel", text)
    assert ("COPY", "--from=build /opt/venv /opt/venv") in final


def test_runs_as_a_non_root_user() -> None:
    final = stages()[-1]
    words = [w for w, _ in final]
    users = [a for w, a in final if w == "USER"]
    assert users, "USER in the runtime stage"
    assert words.index("USER") < words.index("CMD")
    user = users[-1].split(":")[0]
    assert user not in ("root", "0") and user.isdigit(), users  # numeric: runAsNonRoot can check it
    assert "useradd" in " ".join(a for w, a in final if w == "RUN")


def test_stop_signal_and_health_check() -> None:
    final = dict(stages()[-1])
    assert final["STOPSIGNAL"] == "SIGTERM"
    health = final["HEALTHCHECK"]
    assert health.endswith('CMD ["python", "scripts/healthcheck.py", "6066"]'), health
    assert "--web-port=6066" in final["CMD"] and "--web-bind=0.0.0.0" in final["CMD"]


def test_oci_version_label_follows_pyproject() -> None:
    final = stages()[-1]
    assert ("ARG", f"VERSION={PROJECT['version']}") in final
    labels = " ".join(a for w, a in final if w == "LABEL")
    assert 'org.opencontainers.image.version="${VERSION}"' in labels


def test_build_context_is_what_the_dockerfile_copies() -> None:
    ignore = (ROOT / ".dockerignore").read_text().splitlines()
    assert "*" in ignore  # an allow-list
    for word, args in instructions():
        if word == "COPY" and not args.startswith("--from"):
            for source in args.split()[:-1]:
                name = Path(source).name
                assert f"!{name}" in ignore or f"!{name}/" in ignore, source


# ------------------------------------------------------------------------- docker-compose
def test_compose_publishes_on_loopback_only() -> None:
    compose = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
    published = {}
    for name, service in compose["services"].items():
        for port in service.get("ports", []):
            if isinstance(port, dict):
                host_ip = port.get("host_ip")
            else:  # a ${VAR:-default} port is checked with its default
                parts = re.sub(r"\$\{\w+:-([^}]*)\}", r"\1", str(port)).split(":")
                host_ip = parts[0] if len(parts) == 3 else None
            assert host_ip == "127.0.0.1", f"{name}: {port} is published on every interface"
            published[name] = port
    assert {"kafka", "moto", "worker"} <= set(published), published


def test_compose_builds_the_image_with_its_checks() -> None:
    compose = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
    services = compose["services"]
    assert services["worker"]["build"] == "."
    assert "healthcheck" not in services["worker"]  # the image's
    # the demo writer runs the same image without a web server
    assert services["demo-writer"]["healthcheck"] == {"disable": True}


# ----------------------------------------------------------------------------------- README
def test_readme_explains_the_supply_chain() -> None:
    readme = (ROOT / "README.md").read_text()
    section = readme.partition("## Supply chain")[2].partition("\n## ")[0]
    assert section, "README has no 'Supply chain' section"
    assert "make lock" in section
    for lock in locking.LOCKS:
        assert lock in section, lock
    docker = readme.partition("## Docker")[2].partition("\n## ")[0]
    for fact in (
        "127.0.0.1:9092",
        "127.0.0.1:5000",
        "127.0.0.1:6066",
        "10001",
        "HEALTHCHECK",
        "STOPSIGNAL",
        "PYTHON_IMAGE",
        "requirements.lock",
    ):
        assert fact in docker, fact
