"""Metric exposition in TF Serving's format."""

from prometheus_client.parser import text_string_to_metric_families

from serving.metrics import ServingMetrics


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
