"""One deployment per state: which settings make a deployment, and which one owns an APP_ID.

Two deployments started with the same ``APP_ID`` become one consumer group: the leader of
one stops the other's tables, units run with the other's credentials and topic prefix.
So the settings that decide *what* is replicated *where* (its identity) are recorded in
``<APP_ID>-deployment``, a topic whose records are never deleted:

- the first worker to start writes an ``initial`` record with its identity;
- the deployment's identity is the first ``initial`` record, then each ``adopt`` record
  (written by ``faust -A app deployment --adopt``) that names the identity it supersedes;
- a worker whose identity differs stops at start, naming the settings that differ.

Two first starts racing both write; every reader takes the first record, so exactly one
of them wins whatever the timing.  Pure: records in, verdict out; I/O in app.bootstrap.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

# The settings whose difference makes another deployment: mixing them in one consumer
# group moves data across environments (prefix, AWS account/region/role, table choice) or
# breaks the state (STATE_PARTITIONS).  Intervals, limits, logging and web settings may
# differ from worker to worker.
IDENTITY = (
    "STATE_PARTITIONS",
    "KAFKA_TOPIC_PREFIX",
    "KAFKA_OUTPUT_FORMAT",
    "KAFKA_TOMBSTONES",
    "AWS_REGION",
    "AWS_ENDPOINT_URL",
    "AWS_ENDPOINT_URL_DYNAMODB",
    "AWS_ENDPOINT_URL_DYNAMODB_STREAMS",
    "AWS_ENDPOINT_URL_RESOURCE_GROUPS_TAGGING_API",
    "AWS_ROLE_ARN",
    "DYNAMODB_TAG_FILTERS",
    "DYNAMODB_TABLES",
    "DYNAMODB_TABLES_EXCLUDE",
    "DYNAMODB_SYNC_MODE",
    "DYNAMODB_STREAM_START",
)


# STATE_PARTITIONS' default (app.settings), and the one deployments got before it grew
DEFAULT_STATE_PARTITIONS = 32
OLD_DEFAULT_STATE_PARTITIONS = 8


def fingerprint(identity: Mapping[str, str]) -> str:
    """A short, stable digest of an identity (the settings as shown, secrets masked)."""
    canonical = json.dumps({k: identity.get(k, "") for k in IDENTITY}, sort_keys=True)
    return hashlib.sha256(canonical.encode()).hexdigest()[:16]


@dataclass(frozen=True, slots=True)
class Record:
    """One record of the deployment topic."""

    kind: str  # "initial" | "adopt"
    fingerprint: str
    settings: Mapping[str, str]
    host: str
    at: str  # ISO time, for people
    supersedes: str | None = None  # adopt: the fingerprint it replaces

    def key(self, at_ms: int) -> str:
        """Unique per record, so that compaction (if an operator turns it on) keeps all."""
        return f"{self.kind}:{self.fingerprint}:{at_ms}"

    def to_json(self) -> dict[str, object]:
        return {
            "kind": self.kind,
            "fingerprint": self.fingerprint,
            "settings": dict(self.settings),
            "host": self.host,
            "at": self.at,
            "supersedes": self.supersedes,
        }

    @classmethod
    def from_json(cls, value: object) -> Record | None:
        """The record, or None for anything unreadable (skipped, never fatal)."""
        if not isinstance(value, dict):
            return None
        kind, fp, settings = value.get("kind"), value.get("fingerprint"), value.get("settings")
        if (
            kind not in ("initial", "adopt")
            or not isinstance(fp, str)
            or not isinstance(settings, dict)
        ):
            return None
        supersedes = value.get("supersedes")
        return cls(
            kind,
            fp,
            {str(k): str(v) for k, v in settings.items()},
            str(value.get("host", "?")),
            str(value.get("at", "?")),
            supersedes if isinstance(supersedes, str) else None,
        )


def current(records: Iterable[Record]) -> Record | None:
    """The deployment's identity after these records (in topic order); None if none."""
    owner: Record | None = None
    for r in records:
        if owner is None:
            if r.kind == "initial":
                owner = r
        elif r.kind == "adopt" and r.supersedes == owner.fingerprint:
            owner = r
    return owner


def differences(mine: Mapping[str, str], theirs: Mapping[str, str]) -> list[str]:
    """Each identity setting that differs, as ``NAME: 'mine' here, 'theirs' in the
    deployment`` (values as the settings log shows them: secrets are masked)."""
    return [
        f"{k}: {mine.get(k, '')!r} here, {theirs.get(k, '')!r} in the deployment"
        for k in IDENTITY
        if mine.get(k, "") != theirs.get(k, "")
    ]


def conflict(app_id: str, mine: Mapping[str, str], owner: Record) -> str | None:
    """Why a worker with identity ``mine`` must not join ``owner``'s deployment, or None."""
    if fingerprint(mine) == owner.fingerprint:
        return None
    diff = differences(mine, owner.settings) or ["(settings recorded by another version)"]
    why = (
        f"APP_ID {app_id} belongs to another deployment (fingerprint {owner.fingerprint}, "
        f"recorded by {owner.host} at {owner.at}); this worker's settings differ: "
        f"{'; '.join(diff)}.  Give this deployment its own APP_ID, or, to change the "
        f"deployment's settings on purpose, run `faust -A app deployment --adopt` with "
        f"the new settings (see README, Security)"
    )
    theirs = owner.settings.get("STATE_PARTITIONS")
    if theirs and mine.get("STATE_PARTITIONS", "") != theirs:
        why += (
            f".  STATE_PARTITIONS cannot change after the first start: set "
            f"STATE_PARTITIONS={theirs} (a deployment first started before the default "
            f"became {DEFAULT_STATE_PARTITIONS} has {OLD_DEFAULT_STATE_PARTITIONS} unless it "
            f"set it)"
        )
    return why
