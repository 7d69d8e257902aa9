"""Metric exposition in TF Serving's format."""

import numpy as np
from prometheus_client.parser import text_string_to_metric_families

from serving.metrics import Histogram, ServingMetrics


def test_exposition_format_and_names():
    metrics = ServingMetrics()
    metrics.record_request("m", 3, "predict", "REST", "OK", 120.0, examples=2)
    metrics.record_request("m", None, "", "REST", "NOT_FOUND")
    metrics.record_version_event("m", 3, "load_ok")
    text = metrics.render().decode()
    assert text.endswith("\n") and "# HELP" not in text
    assert "# TYPE :tensorflow:serving:request_count counter" in text
    assert ':tensorflow:serving:request_count{model_name="m",status="OK"} 1' in text
    assert ':tensorflow:serving:request_count{model_name="m",status="NOT_FOUND"} 1' in text
    assert (
        ':tensorflow:serving:request_latency_bucket{model_name="m",API="predict",'
        'entrypoint="REST",le="+Inf"} 1'
    ) in text
    assert ':serving:model_version_available{model_name="m",version="3"} 1' in text
    assert (
        ':serving:model_version_request_latency_bucket{model_name="m",version="3",le="+Inf"} 1'
    ) in text
    families = {f.name: f for f in text_string_to_metric_families(text)}
    latency = families[":tensorflow:serving:request_latency"]
    count = [s.value for s in latency.samples if s.name.endswith("_count")]
    assert count == [1.0]


def test_label_values_are_escaped():
    metrics = ServingMetrics()
    metrics.record_request('we"ird\\', None, "", "REST", "OK")
    assert 'model_name="we\\"ird\\\\"' in metrics.render().decode()


def test_observe_many_of_an_array_counts_as_one_observe_per_value():
    # bounds, values just around them, beyond the last, negative, NaN (bisect: first bucket)
    values = [0.001, 0.0010001, 0.002, 0.0, -3.0, 0.5, 0.7, 1.0, 1.5, 99.0, float("nan"), 0.01]
    one_by_one = Histogram("h", ("m",), (0.001, 0.002, 0.005, 0.01, 0.1, 0.5, 1.0))
    for value in values:
        one_by_one.observe(("a",), value)
    as_list = Histogram("h", ("m",), one_by_one.buckets)
    as_list.observe_many(("a",), values)
    as_array = Histogram("h", ("m",), one_by_one.buckets)
    as_array.observe_many(("a",), np.array(values))
    as_array.observe_many(("b",), np.array([[0.003], [2.0]], np.float32))
    expected = one_by_one.get("a")
    assert expected[:8] == [4, 2, 0, 1, 0, 1, 2, 2]  # the buckets, then +Inf's own, sum, count
    assert as_list.get("a")[:-2] == expected[:-2]
    assert as_array.get("a")[:-2] == expected[:-2]
    assert as_array.get("a")[-1] == expected[-1] == len(values)
    assert as_array.get("b")[:8] == [0, 0, 1, 0, 0, 0, 0, 1]
    assert as_array.get("b")[-2:] == [float(np.float32(0.003)) + 2.0, 2]
