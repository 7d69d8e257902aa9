"""Canary and shadow on Kubernetes: the rendered HTTPRoute and version pins, pinned."""

import os
import shutil

import pytest
import yaml

from monitoring import canary, cli, k8s_route, rollback

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
ROUTE = os.path.join(ROOT, "deploy", "k8s", "canary", "route.yaml")


def _route_doc(path):
    return next(d for d in k8s_route.load(path) if d["kind"] == "HTTPRoute")


def _rule_yaml(path) -> str:
    return yaml.safe_dump(_route_doc(path)["spec"]["rules"][0], sort_keys=False)


def _pins(path):
    docs = k8s_route.load(path)
    return {
        d["metadata"]["name"]: k8s_route.pinned(d, "taxi") for d in docs if d["kind"] == "ConfigMap"
    }


@pytest.fixture
def manifest(tmp_path):
    path = tmp_path / "route.yaml"
    shutil.copy(ROUTE, path)
    return str(path)


@pytest.fixture
def metadata(tmp_path, fake_store):
    return fake_store(str(tmp_path / "metadata.sqlite"), [1, 2])


def _canary(manifest, metadata, *args):
    return cli.main(
        [
            "canary",
            *args,
            "--k8s-manifest",
            manifest,
            "--metadata",
            metadata,
            "--reason",
            "pytest",
            "--requested-by",
            "pytest",
        ]
    )


def test_checked_in_route_serves_stable_only():
    assert k8s_route.state(k8s_route.load(ROUTE), "taxi") == k8s_route.RouteState(1, 1, 0, None)
    assert k8s_route.check_route(_route_doc(ROUTE)) == []


def test_canary_weights_then_promote(manifest, metadata):
    assert _canary(manifest, metadata, "deploy", "--candidate", "2", "--weight", "10") == 0
    assert _rule_yaml(manifest) == (
        "matches:\n"
        "- path:\n"
        "    type: PathPrefix\n"
        "    value: /v1/models/taxi\n"
        "backendRefs:\n"
        "- name: taxi-serving-stable\n"
        "  port: 8501\n"
        "  weight: 90\n"
        "- name: taxi-serving-canary\n"
        "  port: 8501\n"
        "  weight: 10\n"
    )
    assert _pins(manifest) == {"taxi-serving-stable-config": 1, "taxi-serving-canary-config": 2}
    assert _canary(manifest, metadata, "route", "--weight", "50") == 0
    weights = [r["weight"] for r in _route_doc(manifest)["spec"]["rules"][0]["backendRefs"]]
    assert weights == [50, 50]
    assert _canary(manifest, metadata, "promote") == 0
    assert _pins(manifest) == {"taxi-serving-stable-config": 2, "taxi-serving-canary-config": 2}
    rule = _route_doc(manifest)["spec"]["rules"][0]
    assert [r["weight"] for r in rule["backendRefs"]] == [100, 0]
    assert "filters" not in rule
    store = rollback.writable_store(metadata)
    recorded = [
        (
            e.properties["action"].string_value,
            e.properties["stable"].string_value,
            e.properties["candidate"].string_value,
            e.properties["canary_weight"].string_value,
        )
        for e in store.get_executions_by_type(canary.EXECUTION_TYPE)
    ]
    assert recorded == [
        ("deploy", "1", "2", "10"),
        ("route", "1", "2", "50"),
        ("promote", "1", "2", "0"),
    ]


def test_shadow_mirrors_without_weight_then_abort(manifest, metadata):
    assert (
        _canary(
            manifest,
            metadata,
            "deploy",
            "--candidate",
            "2",
            "--weight",
            "0",
            "--mirror-percent",
            "100",
        )
        == 0
    )
    assert _rule_yaml(manifest) == (
        "matches:\n"
        "- path:\n"
        "    type: PathPrefix\n"
        "    value: /v1/models/taxi\n"
        "backendRefs:\n"
        "- name: taxi-serving-stable\n"
        "  port: 8501\n"
        "  weight: 100\n"
        "- name: taxi-serving-canary\n"
        "  port: 8501\n"
        "  weight: 0\n"
        "filters:\n"
        "- type: RequestMirror\n"
        "  requestMirror:\n"
        "    backendRef:\n"
        "      name: taxi-serving-canary\n"
        "      port: 8501\n"
    )
    assert _canary(manifest, metadata, "route", "--mirror-percent", "25") == 0
    mirror = _route_doc(manifest)["spec"]["rules"][0]["filters"][0]["requestMirror"]
    assert mirror == {"backendRef": {"name": "taxi-serving-canary", "port": 8501}, "percent": 25}
    assert k8s_route.state(k8s_route.load(manifest), "taxi") == k8s_route.RouteState(1, 2, 0, 25)
    assert _canary(manifest, metadata, "abort") == 0
    assert k8s_route.state(k8s_route.load(manifest), "taxi") == k8s_route.RouteState(1, 1, 0, None)
    assert k8s_route.check_route(_route_doc(manifest)) == []


def test_state_reads_a_mirror_fraction(manifest):
    docs = k8s_route.render(k8s_route.load(manifest), "taxi", k8s_route.RouteState(1, 2, 0, 100))
    mirror = _route_doc_of(docs)["spec"]["rules"][0]["filters"][0]["requestMirror"]
    mirror["fraction"] = {"numerator": 1, "denominator": 8}
    assert k8s_route.state(docs, "taxi").mirror_percent == 12


def _route_doc_of(docs):
    return next(d for d in docs if d["kind"] == "HTTPRoute")


def test_rendered_file_round_trips_to_itself(manifest):
    docs = k8s_route.load(manifest)
    target = k8s_route.RouteState(1, 2, 10, 50)
    text = k8s_route.dump(k8s_route.render(docs, "taxi", target))
    with open(manifest, "w") as f:
        f.write(text)
    assert k8s_route.state(k8s_route.load(manifest), "taxi") == target
    assert k8s_route.dump(k8s_route.render(k8s_route.load(manifest), "taxi", target)) == text


@pytest.mark.parametrize(
    "args, message",
    [
        (["deploy", "--candidate", "3"], "not a blessed"),
        (["deploy", "--candidate", "1"], "already the stable"),
        (["deploy", "--candidate", "2", "--weight", "0"], "weight > 0 or a mirror"),
        (["deploy", "--candidate", "2", "--weight", "101"], "percentage in [0, 100]"),
        (["promote"], "no canary is deployed"),
        (["route", "--weight", "5"], "no canary is deployed"),
    ],
)
def test_refused_changes_leave_the_file_and_mlmd_alone(manifest, metadata, capsys, args, message):
    before = open(manifest).read()
    assert _canary(manifest, metadata, *args) == cli.EXIT_BAD_INPUT
    assert message in capsys.readouterr().err
    assert open(manifest).read() == before
    store = rollback.writable_store(metadata)
    assert not [t for t in store.get_execution_types() if t.name == canary.EXECUTION_TYPE]


def test_route_needs_the_k8s_manifest(metadata, capsys):
    argv = ["canary", "route", "--metadata", metadata, "--weight", "5", "--reason", "x"]
    assert cli.main(argv) == cli.EXIT_BAD_INPUT
    assert "--k8s-manifest" in capsys.readouterr().err


def _valid_route():
    return {
        "apiVersion": "gateway.networking.k8s.io/v1",
        "kind": "HTTPRoute",
        "metadata": {"name": "r"},
        "spec": {
            "parentRefs": [{"name": "g"}],
            "rules": [
                {
                    "backendRefs": [
                        {"name": "a", "port": 8501, "weight": 1},
                        {"name": "b", "port": 8501, "weight": 0},
                    ],
                    "filters": [
                        {
                            "type": "RequestMirror",
                            "requestMirror": {"backendRef": {"name": "b", "port": 8501}},
                        }
                    ],
                }
            ],
        },
    }


def _refs(n):
    return [{"name": f"b{i}", "port": 80, "weight": 1} for i in range(n)]


@pytest.mark.parametrize(
    "path, value, problem",
    [
        (("backendRefs", 0, "weight"), 1_000_001, "weight: an integer in 0..1000000"),
        (("backendRefs", 0, "weight"), -1, "weight: an integer in 0..1000000"),
        (("backendRefs", 0, "weight"), 0, "every weight is 0"),
        (("backendRefs", 0, "port"), None, "needs a port"),
        (("backendRefs",), _refs(17), "backendRefs: 17 > 16"),
        (("filters", 0, "requestMirror"), {}, "needs requestMirror.backendRef"),
        (("filters", 0, "requestMirror", "percent"), 101, "percent: an integer in 0..100"),
        (
            ("filters", 0, "requestMirror", "fraction"),
            {"numerator": 3, "denominator": 2},
            "numerator <= denominator",
        ),
        (("filters", 0, "type"), "Mirror", "is not one of"),
        (("weights",), 1, "unknown fields ['weights']"),
    ],
)
def test_check_route_rejects_what_the_crd_rejects(path, value, problem):
    assert k8s_route.check_route(_valid_route()) == []
    route = _valid_route()
    node = route["spec"]["rules"][0]
    for key in path[:-1]:
        node = node[key]
    node[path[-1]] = value
    problems = k8s_route.check_route(route)
    assert any(problem in p for p in problems), problems


def test_check_route_limits_are_inclusive():
    route = _valid_route()
    route["spec"]["rules"][0]["backendRefs"] = _refs(16)
    route["spec"]["rules"][0]["backendRefs"][0]["weight"] = 1_000_000
    route["spec"]["rules"][0]["filters"][0]["requestMirror"]["percent"] = 100
    assert k8s_route.check_route(route) == []
    mirror = route["spec"]["rules"][0]["filters"][0]["requestMirror"]
    mirror["fraction"] = {"numerator": 1, "denominator": 2}
    assert any("exclusive" in p for p in k8s_route.check_route(route))
