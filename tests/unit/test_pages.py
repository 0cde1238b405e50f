"""What a page means (app.domain.pages): the runners' decisions, without I/O."""

from __future__ import annotations

from dataclasses import dataclass

from hypothesis import given, settings
from hypothesis import strategies as st

from app.domain.lineage import seq_key
from app.domain.pages import ScanStep, ShardAt, scan_page, shard_page


@dataclass(frozen=True)
class Rec:
    sequence_number: str
    approx_ts_ms: int


def recs(*pairs: tuple[int, int]) -> list[Rec]:
    """(sequence number, ts) pairs: sequence numbers as 21-digit strings."""
    return [Rec(f"{seq:021d}", ts) for seq, ts in pairs]


# ---------------------------------------------------------------- shard pages
def test_a_page_after_the_position_is_sent_and_checkpointed_at_its_last_record():
    page = recs((100, 1000), (101, 1000), (105, 2000))
    step = shard_page(page, "it-2", ShardAt(None, 0), cutoff_ms=0, settled=True)
    assert step.send == (0, 1, 2) and step.skipped == 0 and step.commit
    assert step.at == ShardAt(page[-1].sequence_number, 3, caught_up=False)
    assert step.last_ts_ms == 2000
    assert not (step.idle or step.finished or step.report_caught_up)


def test_records_before_the_cutoff_are_skipped_but_checkpointed_past():
    page = recs((1, 1000), (2, 4999), (3, 5000), (4, 3000), (5, 6000))
    step = shard_page(page, "it", ShardAt("0", 7), cutoff_ms=5000, settled=True)
    assert step.send == (2, 4) and step.skipped == 3
    assert step.commit and step.at == ShardAt(page[-1].sequence_number, 12)
    # a page of skipped records only still moves the checkpoint (nothing to send)
    step = shard_page(page[:2], "it", ShardAt(None, 0), cutoff_ms=5000, settled=True)
    assert step.send == () and step.skipped == 2 and step.commit
    assert step.at.pos == page[1].sequence_number and step.last_ts_ms == 4999


def test_sequence_numbers_compare_as_integers():
    # "9..." > "10..." as strings; as numbers the page moves the position on
    at = ShardAt("9" * 21, 1)
    step = shard_page([Rec("1" + "0" * 21, 1)], "it", at, cutoff_ms=0, settled=True)
    assert step.commit and step.at.pos == "1" + "0" * 21


def test_a_page_not_after_the_position_neither_commits_nor_moves():
    at = ShardAt(f"{50:021d}", 9)
    step = shard_page(recs((40, 1), (50, 2)), "it", at, cutoff_ms=0, settled=True)
    assert not step.commit and step.at == at


def test_an_empty_page_of_an_open_shard_reports_caught_up_once_when_settled():
    at = ShardAt("5", 3)
    unsettled = shard_page([], "it", at, cutoff_ms=0, settled=False)
    assert unsettled.idle and not unsettled.report_caught_up and unsettled.at == at
    first = shard_page([], "it", at, cutoff_ms=0, settled=True)
    assert first.report_caught_up and first.at == ShardAt("5", 3, caught_up=True)
    assert not first.commit and not first.finished and first.last_ts_ms == 0
    again = shard_page([], "it", first.at, cutoff_ms=0, settled=True)
    assert not again.report_caught_up and again.at.caught_up
    # records again: the caught-up mark goes, the next empty page reports it again
    busy = shard_page(recs((6, 1)), "it", again.at, cutoff_ms=0, settled=True)
    assert busy.commit and not busy.at.caught_up


def test_the_shard_is_finished_only_without_a_next_iterator():
    last = shard_page(recs((7, 1)), None, ShardAt("5", 3), cutoff_ms=0, settled=False)
    assert last.finished and last.commit and last.at == ShardAt(f"{7:021d}", 4)
    empty = shard_page([], None, ShardAt("5", 3), cutoff_ms=0, settled=True)
    assert empty.finished and empty.idle and not empty.report_caught_up
    assert empty.at == ShardAt("5", 3)


seqs = st.integers(min_value=10**20, max_value=10**40 - 1)
records = st.lists(st.tuples(seqs, st.integers(0, 10_000)), max_size=30).map(
    lambda pairs: [Rec(str(s), ts) for s, ts in sorted(pairs)]
)


@settings(max_examples=400, deadline=None)
@given(
    records,
    st.one_of(st.none(), st.text(min_size=1, max_size=5)),
    st.one_of(st.none(), seqs.map(str)),
    st.integers(0, 10**6),
    st.booleans(),
    st.integers(0, 10_001),
    st.booleans(),
)
def test_shard_page_invariants(page, next_iterator, pos, count, caught_up, cutoff, settled):
    at = ShardAt(pos, count, caught_up)
    step = shard_page(page, next_iterator, at, cutoff, settled)
    # every record is either sent or skipped, the sent ones in order, at/after the cutoff
    assert step.skipped + len(step.send) == len(page)
    assert list(step.send) == sorted(set(step.send))
    assert all(page[i].approx_ts_ms >= cutoff for i in step.send)
    assert step.skipped == sum(r.approx_ts_ms < cutoff for r in page)
    # the position never moves backwards, and moves exactly when the page commits
    assert seq_key(step.at.pos) >= seq_key(at.pos)
    assert step.commit == (seq_key(step.at.pos) > seq_key(at.pos))
    if step.commit:
        assert step.at.pos == page[-1].sequence_number
        assert step.at.count == count + len(page) and not step.at.caught_up
    else:
        assert (step.at.pos, step.at.count) == (pos, count)
    assert step.finished == (next_iterator is None)
    assert step.idle == (not page)
    assert step.report_caught_up == (step.idle and not step.finished and not caught_up and settled)
    assert step.last_ts_ms == (page[-1].approx_ts_ms if page else 0)


# ---------------------------------------------------------------- scan pages
def test_a_scan_page_with_a_last_key_moves_the_cursor():
    step = scan_page(3, {"pk": {"S": "k02"}}, 5)
    assert step == ScanStep(
        count=8, cursor={"pk": {"S": "k02"}}, pos={"pk": {"s": "k02"}}, finished=False
    )


def test_a_scan_page_without_a_last_key_finishes_the_segment():
    assert scan_page(2, None, 6) == ScanStep(count=8, cursor=None, pos=None, finished=True)
    assert scan_page(0, None, 0).finished  # an empty segment


@settings(max_examples=200, deadline=None)
@given(st.integers(0, 1000), st.one_of(st.none(), st.text(max_size=8)), st.integers(0, 10**9))
def test_scan_page_invariants(items, last, count):
    key = None if last is None else {"pk": {"S": last}}
    step = scan_page(items, key, count)
    assert step.count == count + items
    assert step.finished == (key is None) == (step.pos is None) == (step.cursor is None)
