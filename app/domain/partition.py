"""Which partition a Kafka key goes to: Kafka's default partitioner (murmur2 of the
key bytes, made positive, modulo the partition count), as the Java client and aiokafka
compute it, so keys land where any other Kafka producer would put them.

aiokafka's own murmur2 reads the key byte by byte in Python (~15 us for a 40-byte key,
a tenth of our whole per-event budget); this one unpacks 4-byte words in one
``struct`` call.  Pure: tested against aiokafka's and the Java client's test vectors.
"""

from __future__ import annotations

import struct
from functools import lru_cache

_M = 0x5BD1E995
_MASK = 0xFFFFFFFF
_SEED = 0x9747B28C


@lru_cache(maxsize=256)
def _words(n: int) -> struct.Struct:
    return struct.Struct(f"<{n}I")


def murmur2(data: bytes) -> int:
    """Kafka's murmur2 (Utils.murmur2), as an unsigned 32-bit value."""
    length = len(data)
    h = _SEED ^ length
    n4 = length >> 2
    m, mask = _M, _MASK
    for k in _words(n4).unpack_from(data):
        k = (k * m) & mask
        k ^= k >> 24
        h = ((h * m) & mask) ^ ((k * m) & mask)
    tail = length & 3
    if tail:
        base = n4 << 2
        if tail == 3:
            h ^= data[base + 2] << 16
        if tail >= 2:
            h ^= data[base + 1] << 8
        h ^= data[base]
        h = (h * m) & mask
    h ^= h >> 13
    h = (h * m) & mask
    h ^= h >> 15
    return h


def partition_for(key: bytes, partitions: int) -> int:
    """The default partitioner's choice for a non-null key among ``partitions``."""
    return (murmur2(key) & 0x7FFFFFFF) % partitions
