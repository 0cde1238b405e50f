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

import string
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import regex

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


# what the tagging API's GetResources takes (TagFilters): more is refused by AWS
TAG_KEYS_MAX, TAG_VALUES_MAX, TAG_KEY_CHARS, TAG_VALUE_CHARS = 50, 20, 128, 256


def parse_tag_filters(text: str) -> tuple[TagFilter, ...]:
    """Parse ``key[:v1,v2][;key2[:v3]]``; raise ValueError on an empty or duplicate key or
    value, or beyond what GetResources takes (50 keys of 128 characters, 20 values each of
    256)."""
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
        if len(key) > TAG_KEY_CHARS or len(seen) >= TAG_KEYS_MAX:
            raise ValueError(
                f"at most {TAG_KEYS_MAX} tag keys of up to {TAG_KEY_CHARS} "
                "characters (AWS's limits)"
            )
        seen.add(key)
        values: list[str] = []
        for raw in _split(value_part[0], ",") if value_part else []:
            value = _word(raw)
            if not value:
                raise ValueError(f"tag key {key!r} has an empty value")
            if value in values:
                raise ValueError(f"tag key {key!r} lists value {value!r} twice")
            if len(value) > TAG_VALUE_CHARS or len(values) >= TAG_VALUES_MAX:
                raise ValueError(
                    f"at most {TAG_VALUES_MAX} values of up to {TAG_VALUE_CHARS} "
                    f"characters per tag key (AWS's limits); see key {key[:40]!r}"
                )
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
    return [
        {"Key": f.key, "Values": list(f.values)} if f.values else {"Key": f.key} for f in filters
    ]


# One search of DYNAMODB_TABLES_EXCLUDE in one table name may take this long (seconds).
# An ordinary pattern decides in microseconds; one that backtracks catastrophically
# ((a+)+$ took Python's re 3-4 s on a 24-character name, twice as long per character more)
# is stopped there instead of holding the leader.
EXCLUDE_TIMEOUT = 0.05
EXCLUDE_PATTERN_MAX = 1024  # characters
_TABLE_CHARS = string.ascii_letters + string.digits + "._-"  # what a table name is made of
_TABLE_NAME_MAX = 255


def _probes() -> Iterable[str]:
    """Longest table names of one repeated character, alone and followed by another one:
    what nested quantifiers ((a+)+$, (a|aa)+$, ([a-z]+)+$) backtrack on exponentially."""
    for c in _TABLE_CHARS:
        yield c * _TABLE_NAME_MAX
        yield c * (_TABLE_NAME_MAX - 1) + ("-" if c != "-" else ".")


@dataclass(frozen=True, slots=True)
class ExcludePattern:
    """``DYNAMODB_TABLES_EXCLUDE``: a regular expression searched anywhere in a table name
    (``re.search`` semantics, Python ``re`` syntax), each search bounded by ``timeout``.

    It runs on the ``regex`` module (version 0: ``re``'s syntax and behaviour), which can
    stop a search after a timeout and release the GIL meanwhile; Python's ``re`` can do
    neither, so one bad pattern held the event loop for as long as it backtracked.
    Raises ValueError when the pattern does not compile."""

    pattern: str
    timeout: float = EXCLUDE_TIMEOUT
    _compiled: Any = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        try:
            compiled = regex.compile(self.pattern, regex.VERSION0)
        except (regex.error, RecursionError, OverflowError, ValueError) as exc:
            raise ValueError(str(exc) or type(exc).__name__) from None
        object.__setattr__(self, "_compiled", compiled)

    def search(self, name: str, timeout: float | None = None) -> bool:
        """Whether the pattern matches anywhere in ``name``; TimeoutError when it did not
        decide within ``timeout`` (default: the pattern's) seconds, twice in a row (once
        could be the thread waiting for a CPU)."""
        try:
            return self._search(name, timeout or self.timeout)
        except TimeoutError:
            return self._search(name, timeout or self.timeout)

    def _search(self, name: str, timeout: float) -> bool:
        # concurrent: the GIL is released while it searches
        return self._compiled.search(name, timeout=timeout, concurrent=True) is not None

    @property
    def probe_timeout(self) -> float:
        return self.timeout / 10

    def undecided_probe(self) -> str | None:
        """A (255-character) table name on which the pattern does not decide within a tenth
        of its timeout, or None: the worker refuses such a pattern at start, so that a
        pattern it accepts is far from timing out on a real name."""
        for name in _probes():
            try:
                self.search(name, self.probe_timeout)
            except TimeoutError:
                return name
        return None

    def undecided_reason(self) -> str:
        shown = self.pattern if len(self.pattern) <= 60 else self.pattern[:60] + "…"
        return (
            f"DYNAMODB_TABLES_EXCLUDE {shown!r} did not decide within "
            f"{self.timeout * 1000:.0f} ms whether it excludes this table (it backtracks "
            "catastrophically on this name, e.g. nested quantifiers such as (a+)+): the "
            "table is refused rather than replicated against the exclusion; simplify the "
            "pattern"
        )


@dataclass(frozen=True, slots=True)
class Selection:
    names: list[str]  # sorted: the tables to replicate, and the refused ones among them
    refused: dict[str, str]  # name -> why (the exclude pattern could not decide in time)


def select(
    candidates: Iterable[str], include: Sequence[str], exclude: ExcludePattern | None
) -> Selection:
    """Sorted unique candidates, kept only if in ``include`` (when non-empty) and not
    matched anywhere by ``exclude`` (``re.search``; anchor with ``^...$`` for whole names).
    A name the pattern cannot decide on in time is kept and refused: never silently
    replicated, never silently dropped (its state, if any, then says why)."""
    wanted = set(include)
    names: list[str] = []
    refused: dict[str, str] = {}
    for name in sorted(set(candidates)):
        if wanted and name not in wanted:
            continue
        if exclude is not None:
            try:
                if exclude.search(name):
                    continue
            except TimeoutError:
                refused[name] = exclude.undecided_reason()
        names.append(name)
    return Selection(names, refused)


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
        return (
            f"stream view type {info.stream_view_type} carries no new item image "
            f"(inserts and updates would have no state): re-enable the stream with {views}"
        )
    return None


KAFKA_TOPIC_MAX = 249  # Kafka's limit on a topic name (DynamoDB allows 255 for a table)
# topics other systems keep next to ours (an empty KAFKA_TOPIC_PREFIX could reach them)
FOREIGN_TOPICS = ("connect-configs", "connect-offsets", "connect-status")


# the replicator's state topics: <app_id>-<suffix> (created at start, app.main)
STATE_TOPICS = ("control", "tables-changelog", "units-changelog")
# Faust's own topic names: <app_id>-<suffix> (faust/assignor/leader_assignor.py)
FAUST_TOPICS = ("__assignor-__leader",)
# every topic named after the app: <app_id>-<suffix>; "buffer" is reserved for the snapshot
# buffer, "dlq" is the dead-letter topic
APP_TOPIC_SUFFIXES = (*STATE_TOPICS, "dlq", "buffer", *FAUST_TOPICS)
# the longest APP_ID whose topics all fit in Kafka's limit: 249 - len("-__assignor-__leader")
APP_ID_MAX = KAFKA_TOPIC_MAX - 1 - max(map(len, APP_TOPIC_SUFFIXES))


# which deployment owns the app id (app.domain.deployment): one partition, kept for ever
DEPLOYMENT_TOPIC = "deployment"


def internal_topics(app_id: str) -> frozenset[str]:
    """The replicator's own topics (Faust's, such as ``<app_id>-__assignor-__leader``,
    all start with ``<app_id>-__``); ``-buffer`` is reserved for the snapshot buffer."""
    return frozenset(
        f"{app_id}-{suffix}" for suffix in (*STATE_TOPICS, DEPLOYMENT_TOPIC, "dlq", "buffer")
    )


def topic_refusals(names: Iterable[str], prefix: str, app_id: str) -> dict[str, str]:
    """Tables whose output topic (``prefix + name``) cannot be theirs, with the reason:
    too long for Kafka, inside the replicator's own namespace (``<app_id>-…``: its
    control and changelog topics, its dead-letter topic), a topic of Kafka or of another
    system, or one Kafka would take for another table's (names differing only in ``.``
    versus ``_`` collide in Kafka's metrics; the first name in sorted order keeps it)."""
    refused: dict[str, str] = {}
    owner: dict[str, str] = {}  # collision form -> the table keeping it
    own = {t.replace(".", "_") for t in internal_topics(app_id)}
    # Faust's topics, and the snapshot buffers (<app_id>-buffer-<table>-<epoch>)
    own_prefixes = (f"{app_id}-__".replace(".", "_"), f"{app_id}-buffer-".replace(".", "_"))
    for name in sorted(set(names)):
        topic = prefix + name
        kafka_form = topic.replace(".", "_")
        if len(topic) > KAFKA_TOPIC_MAX:
            refused[name] = (
                f"its output topic {topic[:40]}… would be {len(topic)} characters; "
                f"Kafka allows {KAFKA_TOPIC_MAX} (shorten KAFKA_TOPIC_PREFIX or "
                "exclude the table)"
            )
        elif kafka_form in own or kafka_form.startswith(own_prefixes):
            refused[name] = (
                f"its output topic {topic} is one of the replicator's own topics "
                f"({app_id}-…: control, changelogs, dead letters, snapshot buffers); change "
                "KAFKA_TOPIC_PREFIX or exclude the table"
            )
        elif topic.startswith("_") or topic in FOREIGN_TOPICS:
            refused[name] = (
                f"its output topic {topic} is a Kafka or third-party system topic "
                "name; set a KAFKA_TOPIC_PREFIX"
            )
        elif (first := owner.setdefault(kafka_form, name)) != name:
            refused[name] = (
                f"its output topic {topic} collides with {prefix + first} (Kafka "
                "tells '.' and '_' apart in topic names but not in metrics, and "
                f"refuses the second); table {first} keeps it"
            )
    return refused
