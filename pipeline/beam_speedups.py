"""Cuts Apache Beam's pipeline-construction overhead for our many small pipelines.

A cold run builds about a dozen Beam pipelines (ExampleGen and StatisticsGen
per span, Transform, two Evaluators) over a few thousand rows each, so Beam's
per-pipeline fixed costs matter more than the data. Profiling showed one
clear waste: ``apache_beam.transforms.userstate.get_dofn_specs`` (which
finds the state and timer parameters of a DoFn by calling
``inspect.signature`` on every method of the DoFn) runs again and again on
the same DoFn objects — thousands of calls per cold run, several seconds in
all.

``install()`` memoizes it per DoFn *instance* (weakly, so nothing is kept
alive): the answer only depends on the instance's methods, which a DoFn does
not change after construction. Unhashable or non-weak-referenceable DoFns
are passed through uncached. Set ``TAXI_BEAM_SPEEDUPS=0`` to run unpatched
(the benchmark uses it to measure the gain).
"""

from __future__ import annotations

import functools
import os
import weakref

ENV_FLAG = "TAXI_BEAM_SPEEDUPS"


def memoize_per_instance(fn):
    """``fn(obj)`` computed once per live ``obj``; falls back to ``fn`` if ``obj`` can't be keyed."""
    cache: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()

    @functools.wraps(fn)
    def cached(obj):
        try:
            return cache[obj]
        except KeyError:
            pass
        except TypeError:  # unhashable or not weak-referenceable
            return fn(obj)
        result = fn(obj)
        try:
            cache[obj] = result
        except TypeError:
            pass
        return result

    cached.__wrapped_uncached__ = fn
    return cached


def install() -> bool:
    """Installs the memoization (idempotent); False if disabled or not applicable."""
    if os.environ.get(ENV_FLAG, "1") == "0":
        return False
    from apache_beam.transforms import userstate

    current = getattr(userstate, "get_dofn_specs", None)
    if current is None:
        return False
    if hasattr(current, "__wrapped_uncached__"):
        return True
    userstate.get_dofn_specs = memoize_per_instance(current)
    return True
