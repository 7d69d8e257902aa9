"""A seeded, order-independent sample of at most ``max_rows`` serialized records.

A record is kept when its keyed 64-bit hash
(``components.sampling.record_hash``) is among the ``max_rows`` smallest of
all the records' hashes (bottom-k sampling): the same records whatever the
file order, the same for every model scored on them, and exactly
``max_rows`` of them: identical records share a hash, so of those at the
cutoff only as many as fit are kept (the first read; being identical, which
ones does not matter). Two streaming passes: the first keeps only the hashes (8 bytes a record), the second
writes the kept records; records that all fit are not written at all.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable

import numpy as np

# Also the hash of the Tuner's and ModelSelection's one-pass sampler: the same
# seed and limit give them the same rows.
from components.sampling import record_hash

__all__ = ["hash_cutoff", "record_hash", "sample_records"]


def hash_cutoff(hashes: np.ndarray, max_rows: int) -> int | None:
    """The largest hash kept by a bottom-``max_rows`` sample; None keeps every record.

    Raises:
      ValueError: ``max_rows`` is not positive.
    """
    if max_rows < 1:
        raise ValueError(f"max_rows must be positive, got {max_rows}")
    if len(hashes) <= max_rows:
        return None
    return int(np.partition(hashes, max_rows - 1)[max_rows - 1])


def sample_records(
    read: Callable[[], Iterable[bytes]],
    write: Callable[[bytes], None],
    max_rows: int,
    seed: int,
) -> int | None:
    """Writes the bottom-``max_rows`` sample of the records ``read()`` yields.

    Args:
      read: returns a fresh iterable over all the records, in a fixed order
        (called once, and a second time if they are more than ``max_rows``).
      write: called with each kept record, in the order they are read.
      max_rows: how many records to keep at most.
      seed: the hash key: another seed, another sample.

    Returns:
      How many records were read, or None when they were at most
      ``max_rows`` (then nothing was written).
    """
    hashes = np.fromiter((record_hash(r, seed) for r in read()), dtype=np.uint64)
    cutoff = hash_cutoff(hashes, max_rows)
    if cutoff is None:
        return None
    at_cutoff = max_rows - int(np.count_nonzero(hashes < cutoff))
    for record, h in zip(read(), hashes, strict=True):
        if int(h) < cutoff or (int(h) == cutoff and at_cutoff > 0):
            at_cutoff -= int(h) == cutoff
            write(record)
    return len(hashes)
