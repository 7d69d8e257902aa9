"""Deferred row requests: checked per request, converted per batch, same arrays as before."""

import json
import math
import random
import threading

import numpy as np
import pytest
from log_records import read_records
from tensorflow.core.framework import types_pb2 as T

from serving import json_codec as jc
from serving import limits
from serving.batching import BatchingParameters, Scheduler, _task_rows
from serving.deferred_rows import DeferredRows, build_columns
from serving.errors import ServingError
from serving.json_dialect import parse_json_object, parse_nan_as_none

TAXI_LIKE = {
    "company": T.DT_STRING,
    "fare": T.DT_FLOAT,
    "trip_miles": T.DT_FLOAT,
    "trip_seconds": T.DT_DOUBLE,
    "pickup_area": T.DT_DOUBLE,
    "count": T.DT_INT64,
    "payment_type": T.DT_STRING,
}
_LEAVES = {
    T.DT_FLOAT: [0, 1, -2, 0.5, 3.25, 1e300, -1e300, math.nan, math.inf, -0.0, 2**60 + 2**36 + 1],
    T.DT_DOUBLE: [0, -1, 0.1, 1e-300, 2**53 + 1, math.nan, -math.inf, 2**63 - 1],
    T.DT_INT64: [0, -5, 2**63 - 1, -(2**63), 7],
    T.DT_STRING: ["", "a", "é", "Credit Card", "日本"],
}
# values the per-request path decides on (other arrays, or upstream's error)
_STRANGERS = [True, None, "s", 2.5, 2**63, -(2**63) - 1, [1.0], {"b64": "aGk="}, {"x": 1}]


def _decode(doc: dict, inputs: dict, defer: bool):
    body = json.dumps(doc).encode()
    return jc.decode_predict_inputs(parse_json_object(body), inputs, body, defer=defer)[0]


def _same_arrays(got: dict, want: dict) -> None:
    assert list(got) == list(want)  # same order: same batching key
    for name, array in want.items():
        assert got[name].dtype == array.dtype and got[name].shape == array.shape, name
        if array.dtype.kind == "O":
            assert got[name].tolist() == array.tolist(), name
        else:  # bit for bit (NaN included)
            assert got[name].tobytes() == array.tobytes(), name


def _charged(charge, *args, caps=limits.UNLIMITED):
    """(elements, decoded bytes) charged, or the error naming the tensor over `caps`."""
    budget = caps.budget()
    try:
        charge(budget, *args)
    except ServingError as e:
        return e.message
    return budget.elements, budget.decoded_bytes


def _same_charges(deferred: DeferredRows, arrays: dict) -> None:
    totals = (deferred.elements, deferred.decoded_bytes, deferred.charges)
    assert _charged(limits.charge_tensors, *totals) == _charged(limits.charge_arrays, arrays)
    elements, decoded = _charged(limits.charge_arrays, arrays)
    for caps in (
        limits.RequestLimits(max_elements=elements - 1, max_decoded_bytes=decoded),
        limits.RequestLimits(max_elements=elements, max_decoded_bytes=decoded - 1),
    ):
        refused = _charged(limits.charge_tensors, *totals, caps=caps)
        assert refused == _charged(limits.charge_arrays, arrays, caps=caps)
        assert "over the limit" in refused


def _random_request(rng, inputs: dict) -> dict:
    def leaf(dtype):
        return rng.choice(_STRANGERS) if rng.random() < 0.03 else rng.choice(_LEAVES[dtype])

    rows = [{n: leaf(d) for n, d in inputs.items()} for _ in range(rng.randint(1, 3))]
    if rng.random() < 0.02:
        del rows[0][next(iter(inputs))]
    return {"instances": rows}


def test_batch_columns_equal_the_per_request_arrays():
    rng = random.Random(11)
    deferred = undeferred = errors = 0
    for _ in range(60):
        names = rng.sample(sorted(TAXI_LIKE), rng.randint(2, len(TAXI_LIKE)))
        inputs = {n: TAXI_LIKE[n] for n in names}
        requests = []
        for _ in range(rng.randint(1, 12)):
            doc = _random_request(rng, inputs)
            try:
                want = _decode(doc, inputs, defer=False)
            except ServingError as e:  # the deferred path gives the same error
                errors += 1
                with pytest.raises(ServingError) as again:
                    _decode(doc, inputs, defer=True)
                assert again.value.message == e.message
                continue
            got = _decode(doc, inputs, defer=True)
            if type(got) is not DeferredRows:
                undeferred += 1
                _same_arrays(got, want)
                continue
            deferred += 1
            assert not got  # nothing built on the event loop
            assert (got.rows, got.key) == _task_rows(want)
            _same_charges(got, want)
            requests.append((got, want))
        if not requests:
            continue
        with np.errstate(over="ignore"):
            columns = build_columns([got for got, _ in requests])
        for got, want in requests:
            assert got.built and not got  # filled only when asked
            _same_arrays(got.fill(), want)
        _same_arrays(
            columns,
            {n: np.concatenate([want[n] for _, want in requests]) for n in requests[0][1]},
        )
    assert deferred > 200 and undeferred > 3 and errors > 20, (deferred, undeferred, errors)


@pytest.mark.parametrize("others", [[0.5], [3], []])
def test_integers_reach_float_inputs_through_double(others):
    # 2**60 + 2**36 + 1 rounds to 2**60 + 2**36 as a double, then (a tie) to 2**60 as
    # float32; straight from int64 it would round up to 2**60 + 2**37.
    inputs = {"x": T.DT_FLOAT, "s": T.DT_STRING}
    parts = [
        _decode({"instances": [{"x": v, "s": "a"}]}, inputs, True) for v in [2**60 + 2**36 + 1]
    ]
    parts += [_decode({"instances": [{"x": v, "s": "b"}]}, inputs, True) for v in others]
    columns = build_columns(parts)
    assert columns["x"][0] == np.float32(2**60) != np.float32(np.int64(2**60 + 2**36 + 1))
    assert columns["x"].dtype == np.float32 and columns["s"].tolist()[:1] == [b"a"]


@pytest.mark.parametrize(
    "body",
    [
        b'{"instances": [{"x": 1.0, "s": "a"}], "note": true}',  # a boolean somewhere
        b'{"instances": [{"x": [1.0], "s": "a"}]}',  # not a scalar
        b'{"instances": [{"x": 1.0, "s": {"b64": "aGk="}}]}',  # b64 string
        b'{"instances": [{"x": 18446744073709551615, "s": "a"}]}',  # beyond int64
        b'{"instances": [{"x": 1.0}]}',  # a missing input: upstream's error
        b'{"instances": [{"x": "1.0", "s": "a"}]}',  # a string for a float: upstream's error
        b'{"instances": [{"x": null, "s": "a"}]}',
        b'{"inputs": {"x": [1.0], "s": ["a"]}}',  # columnar
    ],
)
def test_requests_the_fast_path_cannot_prove_are_decoded_per_request(body):
    inputs = {"x": T.DT_FLOAT, "s": T.DT_STRING}
    doc = parse_json_object(body)
    try:
        want = jc.decode_predict_inputs(doc, inputs, body)
    except ServingError as e:
        with pytest.raises(ServingError) as again:
            jc.decode_predict_inputs(doc, inputs, body, defer=True)
        assert again.value.message == e.message
        return
    got, row = jc.decode_predict_inputs(doc, inputs, body, defer=True)
    assert type(got) is dict and row == want[1]
    _same_arrays(got, want[0])


def test_signatures_with_other_dtypes_are_not_deferred():
    for dtype, value in ((T.DT_INT32, 1), (T.DT_BOOL, True), (T.DT_UINT64, 1)):
        inputs = {"x": T.DT_FLOAT, "k": dtype}
        doc = {"instances": [{"x": 1.0, "k": value}]}
        assert type(_decode(doc, inputs, True)) is not DeferredRows
    single = _decode({"instances": [{"x": 1.0}]}, {"x": T.DT_FLOAT}, True)
    assert type(single) is not DeferredRows


class FakeSignature:
    key = "serving_default"


class SumServable:
    """y = x + k per row; the first call blocks until `release`, calls record their rows."""

    def __init__(self, fail_negative=False):
        self.calls = []
        self.fail_negative = fail_negative
        self.entered, self.release = threading.Event(), threading.Event()

    def enter(self):
        pass

    def exit(self):
        pass

    def run(self, signature, feeds):
        if not self.entered.is_set():
            self.entered.set()
            assert self.release.wait(60)
        self.calls.append(len(feeds["x"]))
        if self.fail_negative and (feeds["x"] < 0).any():
            raise ServingError(3, "negative x")
        return {"y": feeds["x"].astype(np.float64) + feeds["k"], "s": feeds["s"]}


INPUTS = {"x": T.DT_FLOAT, "k": T.DT_INT64, "s": T.DT_STRING}


def _feeds(rows: list, defer: bool = True):
    return _decode({"instances": [{"x": x, "k": k, "s": s} for x, k, s in rows]}, INPUTS, defer)


def _run_behind_blocker(scheduler, servable, requests: list) -> list:
    """Submits `requests` while the only worker is busy, so they meet in one queue."""
    blocker = threading.Thread(
        target=scheduler.run, args=(servable, FakeSignature(), _feeds([(0.0, 0, "")], False))
    )
    blocker.start()
    assert servable.entered.wait(60)
    results = [None] * len(requests)
    done = [threading.Event() for _ in requests]

    def callback(i):
        def finish(outputs, error):
            results[i] = (outputs, error)
            done[i].set()

        return finish

    for i, feeds in enumerate(requests):
        scheduler.submit(servable, FakeSignature(), feeds, callback(i))
    servable.release.set()
    blocker.join(60)
    assert all(event.wait(60) for event in done)
    return results


@pytest.mark.parametrize("mixed", [False, True])
def test_scheduler_converts_a_batch_of_deferred_requests_once(mixed):
    servable = SumServable()
    scheduler = Scheduler(BatchingParameters(max_batch_size=16, num_batch_threads=1))
    rows = [[(1.5, 1, "a")], [(2.0, 2, "b"), (math.nan, 3, "é")], [(4.0, -4, "")]]
    requests = [_feeds(r, defer=not (mixed and i == 1)) for i, r in enumerate(rows)]
    assert [type(f) is DeferredRows for f in requests] == [True, not mixed, True]
    results = _run_behind_blocker(scheduler, servable, requests)
    assert servable.calls == [1, 4]  # the blocker, then one merged batch
    for feeds, r, (outputs, error) in zip(requests, rows, results, strict=True):
        assert error is None
        # A mixed batch was concatenated from each request's own arrays; else the
        # batch ran on its columns and a request takes its rows only when asked.
        assert bool(feeds) == mixed
        _same_arrays(feeds.fill() if type(feeds) is DeferredRows else feeds, _feeds(r, False))
        want = [x + k for x, k, _ in r]
        np.testing.assert_array_equal(outputs["y"], np.array(want, np.float32).astype(float))
        assert outputs["s"].tolist() == [s.encode() for _, _, s in r]
    assert outputs.batch_feeds["k"].tolist() == [1, 2, 3, -4]
    scheduler.stop()


def test_a_failed_deferred_batch_is_rerun_request_by_request():
    servable = SumServable(fail_negative=True)
    scheduler = Scheduler(BatchingParameters(max_batch_size=16, num_batch_threads=1))
    requests = [_feeds([(x, 1, "a")]) for x in (1.0, -1.0, 3.0)]
    results = _run_behind_blocker(scheduler, servable, requests)
    assert servable.calls == [1, 3, 1, 1, 1]
    assert results[1][1].message == "negative x"
    assert results[0][0]["y"].tolist() == [2.0] and results[2][0]["y"].tolist() == [4.0]
    scheduler.stop()


@pytest.mark.parametrize(
    "params",
    [
        None,  # batching off: each request alone
        BatchingParameters(max_batch_size=8, num_batch_threads=1),  # a batch of one
        BatchingParameters(max_batch_size=8, allowed_batch_sizes=(4, 8), num_batch_threads=1),
    ],
)
def test_deferred_requests_alone_and_padded(params):
    servable = SumServable()
    servable.entered.set()
    scheduler = Scheduler(params, num_threads=1)
    feeds = _feeds([(1.0, 2, "a"), (3.0, 4, "b"), (5.0, 6, "c")])
    outputs = scheduler.run(servable, FakeSignature(), feeds, timeout=60)
    assert servable.calls == [4 if params and params.allowed_batch_sizes else 3]
    assert outputs["y"].tolist() == [3.0, 7.0, 11.0]
    assert not feeds and feeds.fill()["x"].tolist() == [1.0, 3.0, 5.0]
    scheduler.stop()


_TOKENS = ["NaN", "NaN", "1.5", "2", "-0.0", "null", '"NaN"', '"a"', "true", "Infinity", "1e400"]


def _random_body(rng, inputs: dict) -> bytes:
    """Row bodies with NaN where it is a value and where it is not (strings, keys, ...)."""

    def member(name, dtype):
        if dtype == T.DT_STRING:
            value = rng.choice(['"NaN"', '"xNaNy"', "NaN"] + ['"a"', '"é"'] * 10)
        else:
            value = rng.choice(_TOKENS) if rng.random() < 0.06 else rng.choice(["NaN", "0.5", "7"])
        return f'"{name}": {value}'

    def instance():
        members = [member(n, d) for n, d in inputs.items()]
        if rng.random() < 0.05:  # a repeated key: the exact parser keeps the first
            members.append(member(*rng.choice(list(inputs.items()))))
        if rng.random() < 0.03:  # the same, spelled with an escape
            members.append('"f\\u0061re": 0.5')
        if rng.random() < 0.03:
            members.append(rng.choice(['"NaN": 1', '"z\\u0061": 1']))
        return "{" + ", ".join(members) + "}"

    body = '{"instances": [' + ", ".join(instance() for _ in range(rng.randint(1, 3))) + "]"
    if rng.random() < 0.1:
        body += rng.choice([', "signature_name": NaN', ', "note": "NaN"', ', "instances": []'])
    return (body + "}").encode()


NAN_INPUTS = {"fare": T.DT_FLOAT, "tract": T.DT_DOUBLE, "company": T.DT_STRING}


def _exact_and_routed(body: bytes, inputs: dict) -> tuple:
    """(the exact parse's arrays or error message, the orjson route's arrays or None)."""
    try:
        doc = parse_json_object(body)
        want = jc.decode_predict_inputs(doc, inputs, body)[0]
    except ServingError as e:
        want = e.message
    candidate = parse_nan_as_none(body)  # then as serving/rest.py does
    feeds = None
    if candidate is not None and type(candidate.get("signature_name", "")) is str:
        feeds = jc.defer_nan_rows(candidate, inputs, body)
    if feeds is not None:
        assert type(feeds) is DeferredRows and not feeds
        build_columns([feeds])
        feeds.fill()
    return want, feeds


def test_nan_bodies_parsed_by_orjson_give_the_exact_parse_arrays():
    rng = random.Random(3)
    routed = fallbacks = 0
    for _ in range(400):
        body = _random_body(rng, NAN_INPUTS)
        want, feeds = _exact_and_routed(body, NAN_INPUTS)
        if feeds is None:
            fallbacks += 1
            continue
        routed += 1
        assert not isinstance(want, str), (body, want)
        _same_arrays(feeds, want)
    assert routed > 100 and fallbacks > 50, (routed, fallbacks)


ROW = '"fare": NaN, "tract": 1.0, "company": "a"'


@pytest.mark.parametrize(
    "body",
    [
        '{"instances": [{' + ROW + ', "fare": 2.0}]}',  # repeated key: the first wins
        '{"instances": [{"fare" : 2.0, "tract": 1.0, "company": "a", "fare": NaN}]}',
        '{"instances": [{' + ROW.replace("NaN", "2") + ', "f\\u0061re": NaN}]}',  # escaped
        '{"instances": 5, "instances": [{' + ROW + "}]}",  # top level: the first wins too
        '{"instances": [{"fare": null, "tract": 1.0, "company": "NaN"}]}',  # an error
        '{"instances": [{"fare": 1.0, "tract": NaN, "company": "a"}], "NaN": 1}',
        '{"instances": [{"fare": 1.0, "tract": NaN, "company": "a"}], "signature_name": NaN}',
        '{"instances": [{' + ROW + "}]}",
    ],
)
def test_nan_bodies_the_orjson_route_must_not_misread(body):
    want, feeds = _exact_and_routed(body.encode(), NAN_INPUTS)
    if feeds is not None:
        assert not isinstance(want, str), want
        _same_arrays(feeds, want)
    assert (feeds is not None) == (body == '{"instances": [{' + ROW + "}]}")  # only the plain one


def _inputs(record) -> list:
    """[(name, age, score)] rows of a logged request."""
    import tensorflow as tf

    tensors = record.predict_log.request.inputs
    columns = [tf.make_ndarray(tensors[n]).tolist() for n in ("name", "age", "score")]
    return [
        (n.decode(), a, "nan" if math.isnan(s) else s) for n, a, s in zip(*columns, strict=True)
    ]


def test_server_logs_and_mirrors_each_deferred_request_with_its_own_rows(
    tmp_path, start_shadow_server
):

    import model_factory
    import requests

    base = tmp_path / "models"
    model_factory.save_multi_input(str(base / "1"))  # the shadow
    model_factory.save_multi_input(str(base / "2"))  # stable (latest)
    logs = tmp_path / "logs" / "m"
    server = start_shadow_server(base, logs)
    sent = {}
    for i in range(6):  # one or two rows, NaN (missing) scores in the second rows
        rows = [(f"n{i}{j}", 10 * i + j, "nan" if j else 0.5 * i) for j in range(1 + i % 2)]
        instances = [
            {"name": n, "age": a, "score": math.nan if s == "nan" else s} for n, a, s in rows
        ]
        answer = requests.post(
            f"{server.url}/v1/models/m:predict",
            data=json.dumps({"instances": instances}),
            headers={"X-Request-Id": f"r{i}"},
            timeout=60,
        )
        assert answer.status_code == 200, answer.text
        sent[f"r{i}".encode()] = rows
    server.wait_for_metric(
        ':serving:shadow_request_count{model_name="m",version="1",status="OK"} 6'
    )
    assert server.stop() == 0
    logged = {r.predict_log.request.client_id: _inputs(r) for r in read_records(str(logs))}
    assert logged == sent
    mirrored = []
    for record in read_records(str(tmp_path / "logs" / "shadow" / "m")):
        ids = record.predict_log.response.outputs["_request_ids"].string_val
        mirrored += [(i.split(b"/")[0], row) for i, row in zip(ids, _inputs(record), strict=True)]
    assert sorted(mirrored) == sorted((i, row) for i, rows in sent.items() for row in rows)
