"""The DoFn-spec memoization keeps Beam's answers and only skips recomputation."""

import apache_beam as beam
import pytest
from apache_beam.testing.util import assert_that, equal_to
from apache_beam.transforms import userstate
from apache_beam.transforms.userstate import BagStateSpec

from pipeline import beam_speedups


class Plain(beam.DoFn):
    def process(self, x):
        yield x


class Stateful(beam.DoFn):
    BAG = BagStateSpec("bag", beam.coders.VarIntCoder())

    def process(self, kv, bag=beam.DoFn.StateParam(BAG)):  # noqa: B008 - Beam's API
        bag.add(kv[1])
        yield kv


@pytest.fixture()
def installed(monkeypatch):
    monkeypatch.delenv(beam_speedups.ENV_FLAG, raising=False)
    original = userstate.get_dofn_specs
    monkeypatch.setattr(userstate, "get_dofn_specs", original)  # restored after the test
    assert beam_speedups.install()
    assert beam_speedups.install()  # idempotent: not wrapped twice
    assert userstate.get_dofn_specs.__wrapped_uncached__ is original
    return original


def test_answers_are_beams(installed):
    for dofn in (Plain(), Stateful()):
        assert userstate.get_dofn_specs(dofn) == installed(dofn)
    assert userstate.is_stateful_dofn(Stateful())
    assert not userstate.is_stateful_dofn(Plain())


def test_computed_once_per_instance(installed, monkeypatch):
    calls = []

    def counting(dofn):
        calls.append(dofn)
        return installed(dofn)

    cached = beam_speedups.memoize_per_instance(counting)
    a, b = Plain(), Plain()
    for _ in range(3):
        cached(a)
    cached(b)
    assert calls == [a, b]


def test_unhashable_objects_are_passed_through():
    class Unhashable(beam.DoFn):
        __hash__ = None

        def process(self, x):
            yield x

    calls = []
    cached = beam_speedups.memoize_per_instance(lambda d: calls.append(d) or len(calls))
    d = Unhashable()
    assert cached(d) == 1 and cached(d) == 2


def test_disabled_by_environment(monkeypatch):
    monkeypatch.setenv(beam_speedups.ENV_FLAG, "0")
    monkeypatch.setattr(userstate, "get_dofn_specs", userstate.get_dofn_specs)
    assert beam_speedups.install() is False


def test_a_stateful_pipeline_still_runs(installed):
    with beam.Pipeline() as p:
        result = (
            p
            | beam.Create([("k", 1), ("k", 2)])
            | beam.ParDo(Stateful())
            | beam.combiners.Count.Globally()
        )
        assert_that(result, equal_to([2]))
