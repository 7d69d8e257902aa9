"""pipeline.memory: garbage cycles are collected, import-time objects frozen."""

import gc
import weakref

from pipeline import memory


class _Node:
    pass


def test_release_collects_reference_cycles():
    a, b = _Node(), _Node()
    a.other, b.other = b, a
    alive = weakref.ref(a)
    del a, b
    memory.release()
    assert alive() is None


def test_freeze_moves_existing_objects_out_of_collections():
    try:
        memory.freeze_imports()
        assert gc.get_freeze_count() > 0
        kept = _Node()
        kept.self = kept
        alive = weakref.ref(kept)
        del kept
        memory.release()  # created after the freeze: still collected
        assert alive() is None
    finally:
        gc.unfreeze()
