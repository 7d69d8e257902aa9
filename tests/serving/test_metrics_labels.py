"""Request metrics keep a bounded label set and always render."""

from prometheus_client.parser import text_string_to_metric_families

from serving.metrics import UNKNOWN_MODEL, ServingMetrics


def test_unknown_models_share_one_label_once_models_are_configured():
    metrics = ServingMetrics()
    metrics.add_model_names({"taxi"})
    for i in range(1000):
        metrics.record_request(f"guess_{i}", None, "", "REST", "NOT_FOUND")
    metrics.record_request("taxi", 3, "predict", "GRPC", "OK", 10.0)
    metrics.record_request("penguin", 1, "predict", "REST", "OK", 10.0)  # not configured yet
    metrics.add_model_names({"penguin"})  # a reload adds names; earlier ones stay
    metrics.record_request("taxi", 3, "predict", "REST", "OK", 10.0)
    metrics.record_request("penguin", 1, "predict", "REST", "OK", 10.0)
    assert metrics.request_count.get(UNKNOWN_MODEL, "NOT_FOUND") == 1000
    assert metrics.request_count.get(UNKNOWN_MODEL, "OK") == 1
    assert metrics.request_count.get("taxi", "OK") == 2
    assert metrics.request_count.get("penguin", "OK") == 1
    assert metrics.version_requests.get("penguin", "1", "predict", "REST", "OK") == 1
    assert len(metrics.request_count._values) == 4


def test_undecodable_label_values_still_render():
    metrics = ServingMetrics()
    metrics.load_attempts.inc(("/models/\udcff\udcfe", "success"))  # a non-UTF-8 file name
    text = metrics.render().decode("utf-8")
    samples = [
        s
        for f in text_string_to_metric_families(text)
        for s in f.samples
        if "model_path" in s.labels
    ]
    assert samples[0].labels["model_path"].startswith("/models/")
