"""Which tables to replicate: tag filters, include/exclude lists, set differences.

Tag filter syntax (``DYNAMODB_TAG_FILTERS``)::

    key[:v1,v2][;key2[:v3]]

Filters are ANDed across keys and ORed within one key's values; a key without values
matches any value.  Whitespace around keys and values is trimmed.  ``\\`` escapes the next
character, so keys or values may contain ``;`` ``:`` ``,`` ``\\`` or edge whitespace
(e.g. ``aws\\:cloudformation\\:stack-name:orders``).  In a value, ``:`` needs no escape.

Empty text means *no tag filter*: :func:`matches` is then false for every table, so tag
discovery selects nothing and only the include list (``DYNAMODB_TABLES``) names tables.
Never send an empty filter list to ``tag:GetResources``: it would return every resource.
"""
from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass

from app.domain.model import TableInfo

_SPECIAL = frozenset(";:,\\")


@dataclass(frozen=True, slots=True)
class TagFilter:
    key: str
    values: tuple[str, ...] = ()  # () = any value


# A character plus whether it was escaped (escaped characters are never separators or trimmed).
_Char = tuple[str, bool]


def _lex(text: str) -> list[_Char]:
    chars: list[_Char] = []
    it = iter(text)
    for c in it:
        if c == "\\":
            nxt = next(it, None)
            if nxt is None:
                raise ValueError("tag filters end with a dangling '\\'")
            chars.append((nxt, True))
        else:
            chars.append((c, False))
    return chars


def _split(chars: list[_Char], sep: str, maxsplit: int = -1) -> list[list[_Char]]:
    parts: list[list[_Char]] = [[]]
    for c, escaped in chars:
        if c == sep and not escaped and maxsplit != 0:
            parts.append([])
            maxsplit -= 1
        else:
            parts[-1].append((c, escaped))
    return parts


def _word(chars: list[_Char]) -> str:
    start, end = 0, len(chars)
    while start < end and chars[start][0].isspace() and not chars[start][1]:
        start += 1
    while end > start and chars[end - 1][0].isspace() and not chars[end - 1][1]:
        end -= 1
    return "".join(c for c, _ in chars[start:end])


def parse_tag_filters(text: str) -> tuple[TagFilter, ...]:
    """Parse ``key[:v1,v2][;key2[:v3]]``; raise ValueError on an empty or duplicate key or value."""
    chars = _lex(text)
    if not _word(chars):
        return ()
    filters: list[TagFilter] = []
    seen: set[str] = set()
    for n, entry in enumerate(_split(chars, ";"), 1):
        key_part, *value_part = _split(entry, ":", maxsplit=1)
        key = _word(key_part)
        if not key:
            raise ValueError(f"tag filter #{n} has an empty key")
        if key in seen:
            raise ValueError(f"tag key {key!r} appears twice; list all its values after one ':'")
        seen.add(key)
        values: list[str] = []
        for raw in _split(value_part[0], ",") if value_part else []:
            value = _word(raw)
            if not value:
                raise ValueError(f"tag key {key!r} has an empty value")
            if value in values:
                raise ValueError(f"tag key {key!r} lists value {value!r} twice")
            values.append(value)
        filters.append(TagFilter(key, tuple(values)))
    return tuple(filters)


def _escape(text: str) -> str:
    # Escape separators, and edge whitespace so that parsing does not trim it.
    last = len(text) - 1
    return "".join(
        "\\" + c if c in _SPECIAL or (c.isspace() and i in (0, last)) else c
        for i, c in enumerate(text)
    )


def render_tag_filters(filters: Iterable[TagFilter]) -> str:
    """Inverse of :func:`parse_tag_filters` (for logs and round-trip tests)."""
    parts = []
    for f in filters:
        key = _escape(f.key)
        parts.append(f"{key}:{','.join(map(_escape, f.values))}" if f.values else key)
    return ";".join(parts)


def matches(tags: Mapping[str, str], filters: Sequence[TagFilter]) -> bool:
    """True when every filter's key is tagged with one of its values; false for no filters."""
    return bool(filters) and all(
        f.key in tags and (not f.values or tags[f.key] in f.values) for f in filters
    )


def to_tagging_api_filters(filters: Iterable[TagFilter]) -> list[dict[str, object]]:
    """``TagFilters`` for ``tag:GetResources``; ``Values`` omitted for any-value keys."""
    return [{"Key": f.key, "Values": list(f.values)} if f.values else {"Key": f.key}
            for f in filters]


def select(
    candidates: Iterable[str], include: Sequence[str], exclude: re.Pattern[str] | None
) -> list[str]:
    """Sorted unique candidates, kept only if in ``include`` (when non-empty) and not
    matched anywhere by ``exclude`` (``re.search``; anchor with ``^...$`` for whole names)."""
    wanted = set(include)
    return sorted(
        name for name in set(candidates)
        if (not wanted or name in wanted) and not (exclude and exclude.search(name))
    )


def diff(desired: Iterable[str], known: Iterable[str]) -> tuple[list[str], list[str]]:
    """``(added, removed)``: sorted names to start and to stop replicating."""
    want, have = set(desired), set(known)
    return sorted(want - have), sorted(have - want)


def table_name_from_arn(arn: str) -> str:
    """``arn:aws:dynamodb:region:acct:table/Name[/stream/...]`` -> ``Name``."""
    parts = arn.split(":", 5)
    if len(parts) == 6 and parts[0] == "arn" and parts[2] == "dynamodb":
        kind, _, rest = parts[5].partition("/")
        name = rest.split("/", 1)[0]
        if kind == "table" and name:
            return name
    raise ValueError(f"not a DynamoDB table ARN: {arn!r}")


# Stream view types whose records carry the item's new state (NEW_IMAGE: no ``before``).
NEW_STATE_VIEWS = ("NEW_AND_OLD_IMAGES", "NEW_IMAGE")


def refusal(info: TableInfo, needs_stream: bool) -> str | None:
    """Why the table cannot be replicated as configured, or None when it can.

    The stream modes need a stream whose records carry the new item image: with
    ``KEYS_ONLY`` or ``OLD_IMAGE`` inserts and updates would go out without their state
    (``after: null``).  ``snapshot_only`` (``needs_stream`` false) reads no stream."""
    if not needs_stream:
        return None
    views = "NEW_AND_OLD_IMAGES (or NEW_IMAGE), or set DYNAMODB_SYNC_MODE=snapshot_only"
    if not info.stream_arn:
        return f"no DynamoDB stream enabled: enable one with view type {views}"
    if info.stream_view_type not in NEW_STATE_VIEWS:
        return (f"stream view type {info.stream_view_type} carries no new item image "
                f"(inserts and updates would have no state): re-enable the stream with {views}")
    return None


KAFKA_TOPIC_MAX = 249  # Kafka's limit on a topic name (DynamoDB allows 255 for a table)
# topics other systems keep next to ours (an empty KAFKA_TOPIC_PREFIX could reach them)
FOREIGN_TOPICS = ("connect-configs", "connect-offsets", "connect-status")


# the replicator's state topics: <app_id>-<suffix> (created at start, app.main)
STATE_TOPICS = ("control", "tables-changelog", "units-changelog")


# which deployment owns the app id (app.domain.deployment): one partition, kept for ever
DEPLOYMENT_TOPIC = "deployment"


def internal_topics(app_id: str) -> frozenset[str]:
    """The replicator's own topics (Faust's, such as ``<app_id>-__assignor-__leader``,
    all start with ``<app_id>-__``); ``-buffer`` is reserved for the snapshot buffer."""
    return frozenset(f"{app_id}-{suffix}"
                     for suffix in (*STATE_TOPICS, DEPLOYMENT_TOPIC, "dlq", "buffer"))


def topic_refusals(names: Iterable[str], prefix: str, app_id: str) -> dict[str, str]:
    """Tables whose output topic (``prefix + name``) cannot be theirs, with the reason:
    too long for Kafka, inside the replicator's own namespace (``<app_id>-…``: its
    control and changelog topics, its dead-letter topic), a topic of Kafka or of another
    system, or one Kafka would take for another table's (names differing only in ``.``
    versus ``_`` collide in Kafka's metrics; the first name in sorted order keeps it)."""
    refused: dict[str, str] = {}
    owner: dict[str, str] = {}  # collision form -> the table keeping it
    own = {t.replace(".", "_") for t in internal_topics(app_id)}
    own_prefix = f"{app_id}-__".replace(".", "_")
    for name in sorted(set(names)):
        topic = prefix + name
        kafka_form = topic.replace(".", "_")
        if len(topic) > KAFKA_TOPIC_MAX:
            refused[name] = (f"its output topic {topic[:40]}… would be {len(topic)} characters; "
                             f"Kafka allows {KAFKA_TOPIC_MAX} (shorten KAFKA_TOPIC_PREFIX or "
                             "exclude the table)")
        elif kafka_form in own or kafka_form.startswith(own_prefix):
            refused[name] = (f"its output topic {topic} is one of the replicator's own topics "
                             f"({app_id}-…: control, changelogs, dead letters); change "
                             "KAFKA_TOPIC_PREFIX or exclude the table")
        elif topic.startswith("_") or topic in FOREIGN_TOPICS:
            refused[name] = (f"its output topic {topic} is a Kafka or third-party system topic "
                             "name; set a KAFKA_TOPIC_PREFIX")
        elif (first := owner.setdefault(kafka_form, name)) != name:
            refused[name] = (f"its output topic {topic} collides with {prefix + first} (Kafka "
                             "tells '.' and '_' apart in topic names but not in metrics, and "
                             f"refuses the second); table {first} keeps it")
    return refused
