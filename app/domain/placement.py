"""Which control partition a new work unit is placed on — pure.

A unit runs on the worker that owns its control partition (the control topic and the
state tables are co-partitioned, app.state).  Left to the hash of its key, a table's
8 scan segments landed 7+1 or 5+3 on 2 workers.  Instead the coordinator places each
new unit (app.domain.protocol.UnitId carries the placement, so every sender of a
message for it reaches the same partition):

* the control agent passes the current owners of the control partitions as
  :data:`Groups`, one tuple of partitions per worker (:func:`groups`, from Faust's
  assignment, which every member receives);
* a new unit goes to the worker holding fewest of the table's live units *of its
  family* (scan segments, buffer replays, stream units: the watcher and the shards),
  then to that worker's partition holding fewest of them.  Ties go round the workers
  and partitions from a point that depends on the table's name and epoch, so that
  small tables do not all start on the same worker.

So each family of a table is spread over the workers of the moment to within one unit.
A placement is fixed for the unit's life: when workers come or go Faust moves whole
partitions, evenly (its assignor balances partition counts), and the units with them.
"""

from __future__ import annotations

import zlib
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence

# one tuple of control partitions per worker; () when placement is not used
Groups = tuple[tuple[int, ...], ...]


def groups(
    distribution: Mapping[str, Mapping[str, Iterable[int]]], topic: str, partitions: int
) -> Groups:
    """The workers' control partitions from Faust's ``changelog_distribution`` (worker
    url -> {changelog topic: partitions}) of a changelog co-partitioned with the control
    topic.  Nothing known yet (no assignment): all the partitions as one group."""
    seen: set[int] = set()
    out: list[tuple[int, ...]] = []
    for _url, topics in sorted(distribution.items()):
        mine = tuple(
            sorted(p for p in set(topics.get(topic, ())) if 0 <= p < partitions and p not in seen)
        )
        seen.update(mine)
        if mine:
            out.append(mine)
    return tuple(out) if out else (tuple(range(partitions)),)


def _turn(items: Sequence[int] | Sequence[tuple[int, ...]], salt: str) -> list[int]:
    """Indexes of ``items``, starting at a point that depends on ``salt``."""
    n = len(items)
    start = zlib.crc32(salt.encode()) % n if n else 0
    return [(start + i) % n for i in range(n)]


def spread(groups: Groups, taken: Iterable[int], n: int, salt: str) -> list[int]:
    """Control partitions for ``n`` new units of one family, whose live units are on the
    partitions ``taken`` (one entry per unit)."""
    if not groups:
        raise ValueError("no control partitions to place units on")
    load = Counter(taken)
    worker_order = _turn(groups, salt)
    out: list[int] = []
    for _ in range(n):
        w = min(
            worker_order, key=lambda i: (sum(load[p] for p in groups[i]), worker_order.index(i))
        )
        group = groups[w]
        order = _turn(group, f"{salt}/{w}")
        i = min(order, key=lambda i: (load[group[i]], order.index(i)))
        load[group[i]] += 1
        out.append(group[i])
    return out
