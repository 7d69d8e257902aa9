"""Span selection and baseline selection used by the pipeline's resolvers."""

from tfx.types import standard_artifacts

from components.baseline import pick_baseline
from components.spans import select_spans


def _examples(artifact_id, span):
    artifact = standard_artifacts.Examples()
    artifact.id = artifact_id
    artifact.set_int_custom_property("span", span)
    return artifact


def test_newest_passed_artifact_per_span():
    artifacts = [
        _examples(1, 2013),
        _examples(2, 2014),
        _examples(3, 2014),
        _examples(4, 2015),
        _examples(5, 2016),
    ]
    passed = {1, 2, 3, 4}  # span 2016 failed validation
    chosen = select_spans(artifacts, passed, num_spans=0)
    assert [(a.id, a.get_int_custom_property("span")) for a in chosen] == [
        (4, 2015),
        (3, 2014),
        (1, 2013),
    ]


def test_num_spans_keeps_newest():
    artifacts = [_examples(i, 2010 + i) for i in range(1, 6)]
    chosen = select_spans(artifacts, {a.id for a in artifacts}, num_spans=2)
    assert [a.get_int_custom_property("span") for a in chosen] == [2015, 2014]


def _model(artifact_id):
    model = standard_artifacts.Model()
    model.id = artifact_id
    return model


def _blessing(model_id, blessed):
    blessing = standard_artifacts.ModelBlessing()
    blessing.id = 100 + model_id
    blessing.set_int_custom_property("current_model_id", model_id)
    blessing.set_int_custom_property("blessed", int(blessed))
    return blessing


def test_baseline_is_newest_blessed_other_than_candidate():
    models = [_model(1), _model(2), _model(3)]
    blessings = [_blessing(1, True), _blessing(2, False), _blessing(3, True)]
    model, blessing = pick_baseline(models, blessings, candidate_ids={3})
    assert [m.id for m in model] == [1]
    assert [b.id for b in blessing] == [101]


def test_no_baseline_on_first_run():
    assert pick_baseline([_model(1)], [_blessing(1, True)], candidate_ids={1}) == ([], [])


def test_by_span_orders_newest_span_first_whatever_the_ids():
    from tfx.types import standard_artifacts

    from components.spans import by_span

    def examples(artifact_id, span):
        a = standard_artifacts.Examples()
        a.id = artifact_id
        a.set_int_custom_property("span", span)
        return a

    # Ingested side by side: ids in completion order, not span order.
    artifacts = [examples(4, 2015), examples(5, 2013), examples(6, 2014), examples(9, 2013)]
    assert [(a.get_int_custom_property("span"), a.id) for a in by_span(artifacts)] == [
        (2015, 4),
        (2014, 6),
        (2013, 9),
        (2013, 5),
    ]


def test_span_ordered_components_keep_the_stock_node_ids():
    from components.span_order import Trainer, Transform, Tuner

    assert (Transform.__name__, Trainer.__name__, Tuner.__name__) == (
        "Transform",
        "Trainer",
        "Tuner",
    )
