#!/usr/bin/env python3
"""Cut the hashed lock of one requirement out of a bigger lock (docker/images.sh).

    python docker/lock_subset.py 'moto[server]' requirements-dev.lock > moto-server.lock

The closure of the requirement (its extras included, environment markers evaluated for
the target: CPython 3.11 on Linux) is taken from the metadata of the packages installed in
this interpreter, which `make venv` installed from that very lock; each package's block,
its version and sha256 hashes, is copied from the lock unchanged.  So the moto image runs
exactly the moto the tests run, every file checked against the lock's hashes.
"""

from __future__ import annotations

import re
import sys
from importlib import metadata
from pathlib import Path

try:
    from packaging.requirements import Requirement
    from packaging.utils import canonicalize_name
except ImportError:  # not in the dev lock; pip (requirements-build.lock) vendors it
    from pip._vendor.packaging.requirements import Requirement
    from pip._vendor.packaging.utils import canonicalize_name

TARGET = {
    "python_version": "3.11",
    "python_full_version": "3.11.2",
    "sys_platform": "linux",
    "platform_system": "Linux",
    "platform_machine": "x86_64",
    "os_name": "posix",
    "implementation_name": "cpython",
    "platform_python_implementation": "CPython",
}


def closure(root: Requirement) -> set[str]:
    """Names of the packages `root` needs: nodes are (package, extra), "" the package itself."""
    visited: set[tuple[str, str]] = set()
    todo = [(root.name, extra) for extra in {"", *root.extras}]
    while todo:
        name, extra = todo.pop()
        node = (canonicalize_name(name), extra)
        if node in visited:
            continue
        visited.add(node)
        for text in metadata.requires(name) or []:
            req = Requirement(text)
            if req.marker is None:
                if extra:  # a base dependency: the node (name, "") has it
                    continue
            elif not req.marker.evaluate({**TARGET, "extra": extra}):
                continue
            todo.extend((req.name, e) for e in {"", *req.extras})
    return {name for name, _ in visited}


def blocks(lock: str) -> dict[str, str]:
    """Each pinned package's block: `name==version \\` and its hash lines."""
    found: dict[str, str] = {}
    for block in re.findall(
        r"^[A-Za-z0-9][^\n]*==[^\n]*(?:\n {4}--hash[^\n]*)+", lock, re.MULTILINE
    ):
        found[canonicalize_name(block.split("==", 1)[0].split("[")[0])] = block
    return found


def main(argv: list[str]) -> int:
    requirement, lock_path = Requirement(argv[1]), Path(argv[2])
    pinned = blocks(lock_path.read_text())
    names = closure(requirement)
    missing = sorted(names - pinned.keys())
    if missing:
        print(f"not in {lock_path}: {', '.join(missing)}", file=sys.stderr)
        return 1
    print(f"# {requirement} and its dependencies, cut from {lock_path.name} by {argv[0]}")
    for name in sorted(names):
        print(pinned[name])
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
