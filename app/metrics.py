"""Prometheus metrics, declared in one place.  Tests pass their own registry."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

from prometheus_client import CollectorRegistry, Counter, Gauge


@dataclass
class Metrics:
    registry: CollectorRegistry
    events_out: Counter
    bytes_out: Counter
    snapshot_items: Counter
    lag_seconds: Gauge
    throttles: Counter
    retries: Counter
    dead_letters: Counter
    resnapshots: Counter
    table_errors: Counter
    rebalances: Counter
    skipped_before_cutoff: Counter
    tables_refused: Gauge
    foreign_control_messages: Counter
    # the series tables_refused has (init=False: any field may follow it)
    _refused: dict[str, str] = field(default_factory=dict, init=False)

    @classmethod
    def create(cls, registry: CollectorRegistry | None = None) -> Metrics:
        r = registry if registry is not None else CollectorRegistry()
        p = "dynamodb_replicator_"
        return cls(
            registry=r,
            events_out=Counter(
                p + "events_out",
                "Events written to Kafka (tombstones aside), kind = snapshot | stream",
                ["table", "kind"],
                registry=r,
            ),
            bytes_out=Counter(
                p + "bytes_out", "Bytes of event values written", ["table"], registry=r
            ),
            snapshot_items=Counter(
                p + "snapshot_items", "Items read by INIT_SYNC scans", ["table"], registry=r
            ),
            lag_seconds=Gauge(
                p + "lag_seconds",
                "now - ApproximateCreationDateTime of the last record delivered",
                ["table", "shard"],
                registry=r,
            ),
            throttles=Counter(
                p + "throttles", "Throttled AWS calls", ["table", "operation"], registry=r
            ),
            retries=Counter(
                p + "retries", "Retried AWS or Kafka calls", ["table", "reason"], registry=r
            ),
            dead_letters=Counter(
                p + "dead_letters",
                "Events routed to the dead-letter topic",
                ["table", "reason"],
                registry=r,
            ),
            resnapshots=Counter(
                p + "resnapshots", "Automatic or requested re-snapshots", ["table"], registry=r
            ),
            table_errors=Counter(
                p + "table_errors", "Tables paused by a permanent error", ["table"], registry=r
            ),
            rebalances=Counter(p + "rebalances", "Rebalances seen by this worker", registry=r),
            skipped_before_cutoff=Counter(
                p + "skipped_before_cutoff",
                "Stream records older than the snapshot cut-over",
                ["table"],
                registry=r,
            ),
            tables_refused=Gauge(
                p + "tables_refused",
                "1 per table discovery found but "
                "refuses to replicate, labelled with the reason (the whole "
                "cluster's, as every worker sees it)",
                ["table", "reason"],
                registry=r,
            ),
            foreign_control_messages=Counter(
                p + "foreign_control_messages",
                "Control messages sent by a worker or CLI "
                "with other deployment settings (APP_ID shared by two deployments)",
                ["fingerprint"],
                registry=r,
            ),
        )

    def set_refused(self, refused: Mapping[str, str]) -> None:
        """``tables_refused`` = exactly ``{table: reason}``: a table no longer refused, or
        refused for another reason, loses its old series (bounded, never stale)."""
        for table, reason in list(self._refused.items()):
            if refused.get(table) != reason:
                self.tables_refused.remove(table, reason)
                del self._refused[table]
        for table, reason in refused.items():
            self.tables_refused.labels(table, reason).set(1)
            self._refused[table] = reason
