"""Our murmur2 partitioner must agree with Kafka's (Java client) and aiokafka's."""

from __future__ import annotations

import pytest
from aiokafka.partitioner import DefaultPartitioner
from aiokafka.partitioner import murmur2 as aiokafka_murmur2
from hypothesis import given, settings
from hypothesis import strategies as st

from app import fastwire
from app.domain.partition import murmur2, partition_for

# org.apache.kafka.common.utils.UtilsTest#testMurmur2 (signed 32-bit results)
JAVA_VECTORS = {
    b"21": -973932308,
    b"foobar": -790332482,
    b"a-little-bit-long-string": -985981536,
    b"a-little-bit-longer-string": -1486304829,
    b"lkjh234lh9fiuh90y23oiuhsafujhadof229phr9h19h89h8": -58897971,
    b"abc": 479470107,
}


def signed(v: int) -> int:
    return v - (1 << 32) if v & 0x80000000 else v


def test_java_client_vectors() -> None:
    assert {k: signed(murmur2(k)) for k in JAVA_VECTORS} == JAVA_VECTORS


@settings(max_examples=500)
@given(st.binary(max_size=300), st.integers(min_value=1, max_value=1000))
def test_same_hash_and_partition_as_aiokafka(key: bytes, n: int) -> None:
    assert murmur2(key) == aiokafka_murmur2(key) & 0xFFFFFFFF
    parts = list(range(n))
    assert partition_for(key, n) == DefaultPartitioner()(key, parts, parts)


@settings(max_examples=500)
@given(st.binary(max_size=300), st.integers(min_value=1, max_value=1000))
def test_the_native_partitioner_is_the_reference(key: bytes, n: int) -> None:
    """What app.output uses (app.fastwire.partition_for: the Rust extension's murmur2 when
    it is built, as `make` does) picks the reference's partition."""
    assert fastwire.ACTIVE == "native", fastwire.DESCRIPTION  # `make` builds it
    assert fastwire.partition_for(key, n) == partition_for(key, n)


def test_the_native_partitioner_on_the_java_vectors_and_edges() -> None:
    for key in [*JAVA_VECTORS, b"", b"\x00", b"\xff" * 7, bytes(range(256))]:
        for n in (1, 3, 2**31 - 1):
            assert fastwire.partition_for(key, n) == partition_for(key, n), (key, n)
    with pytest.raises(ValueError):
        fastwire.partition_for(b"k", 0)
