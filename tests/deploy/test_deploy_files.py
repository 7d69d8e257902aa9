"""The files a user runs for CI/CD and deployment, checked by the tools that own them.

actionlint (GitHub Actions), hadolint (Dockerfiles), kubernetes-validate
(strict Kubernetes 1.30 schemas) for every manifest under deploy/k8s/; the
Gateway API HTTPRoute, whose CRD schema is not packaged, against the v1
constraints in monitoring/k8s_route.check_route. Each tool is also shown a
broken file, so a check that silently passes everything fails here.
"""

import glob
import importlib.util
import os
import subprocess
import sys

import pytest
import yaml
from kubernetes_validate import utils as k8s_validate

from monitoring import cli, k8s_route

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
BIN = os.path.dirname(sys.executable)
WORKFLOWS = sorted(glob.glob(os.path.join(ROOT, ".github", "workflows", "*.yml")))
DOCKERFILES = sorted(glob.glob(os.path.join(ROOT, "deploy", "**", "Dockerfile"), recursive=True))
MANIFESTS = sorted(glob.glob(os.path.join(ROOT, "deploy", "k8s", "**", "*.yaml"), recursive=True))
K8S_VERSION = "1.30.0"


def _tool(name):
    path = os.path.join(BIN, name)
    assert os.path.exists(path), f"{name} not installed in the venv (requirements/lock.txt)"
    return path


def _run(args):
    return subprocess.run(args, capture_output=True, text=True, timeout=120, cwd=ROOT)


def _docs(path):
    with open(path) as f:
        return [d for d in yaml.safe_load_all(f) if d]


def _all_docs():
    return [(os.path.relpath(p, ROOT), d) for p in MANIFESTS for d in _docs(p)]


def _by_name(kind, name):
    found = [d for _, d in _all_docs() if d["kind"] == kind and d["metadata"]["name"] == name]
    assert len(found) == 1, f"{kind} {name}: {len(found)} found"
    return found[0]


@pytest.mark.slow
def test_workflows_pass_actionlint():
    assert WORKFLOWS
    result = _run([_tool("actionlint"), "-no-color", *WORKFLOWS])
    assert result.returncode == 0, result.stdout + result.stderr


@pytest.mark.slow
def test_actionlint_rejects_a_broken_workflow(tmp_path):
    broken = tmp_path / ".github" / "workflows" / "broken.yml"
    broken.parent.mkdir(parents=True)
    broken.write_text(
        "on: push\njobs:\n  a:\n    runs-on: ubuntu-24.04\n    needs: nothere\n"
        "    steps:\n      - run: echo ${{ github.sha1 }}\n"
    )
    result = _run([_tool("actionlint"), "-no-color", str(broken)])
    assert result.returncode == 1
    assert "nothere" in result.stdout and "sha1" in result.stdout


def test_workflow_stages_and_release():
    with open(os.path.join(ROOT, ".github", "workflows", "ci.yml")) as f:
        workflow = yaml.safe_load(f)
    jobs = workflow["jobs"]
    triggers = workflow[True]  # YAML 1.1 reads the key `on` as True
    assert triggers["push"]["tags"] == ["v*"] and "pull_request" in triggers
    stages = ["lint", "unit", "integration", "e2e"]
    for before, after in zip(stages, stages[1:], strict=False):
        assert jobs[after]["needs"] == before
    commands = {name: " ".join(s.get("run", "") for s in jobs[name]["steps"]) for name in stages}
    assert "make lint" in commands["lint"]
    assert "make test-fast" in commands["unit"]
    assert '-m "slow and not e2e"' in commands["integration"]
    assert "-m e2e" in commands["e2e"]
    # Built on every push: no condition on the image and the spec jobs.
    assert "if" not in jobs["image"] and "if" not in jobs["kubeflow-spec"]
    build = next(s for s in jobs["image"]["steps"] if "build-push-action" in s.get("uses", ""))
    assert build["with"]["file"] == "deploy/pipeline/Dockerfile"
    assert build["with"]["push"] == "${{ startsWith(github.ref, 'refs/tags/v') }}"
    spec_steps = " ".join(s.get("run", "") for s in jobs["kubeflow-spec"]["steps"])
    assert "taxi-kubeflow-compile" in spec_steps and "--output taxi_pipeline.json" in spec_steps
    # Published on a v* tag once every stage passed.
    assert jobs["publish"]["if"] == "startsWith(github.ref, 'refs/tags/v')"
    assert set(jobs["publish"]["needs"]) == {"e2e", "image", "kubeflow-spec"}


@pytest.mark.slow
def test_dockerfiles_pass_hadolint():
    assert DOCKERFILES
    result = _run([_tool("hadolint"), "--no-color", *DOCKERFILES])
    assert result.returncode == 0, result.stdout + result.stderr


@pytest.mark.slow
def test_hadolint_rejects_a_broken_dockerfile(tmp_path):
    broken = tmp_path / "Dockerfile"
    broken.write_text("FROM python:latest\nRUN cd /tmp && apt-get install curl\n")
    result = _run([_tool("hadolint"), "--no-color", str(broken)])
    assert result.returncode == 1
    assert "DL3007" in result.stdout and "DL3003" in result.stdout


def test_every_manifest_is_valid():
    docs = _all_docs()
    assert {d["kind"] for _, d in docs} >= {
        "CronJob",
        "Deployment",
        "Service",
        "ConfigMap",
        "HTTPRoute",
        "PersistentVolumeClaim",
    }
    for path, doc in docs:
        if doc["apiVersion"].startswith("gateway.networking.k8s.io/"):
            assert k8s_route.check_route(doc) == [], path
            continue
        try:
            k8s_validate.validate(doc, K8S_VERSION, strict=True)
        except k8s_validate.ValidationError as e:
            pytest.fail(f"{path} {doc['kind']}/{doc['metadata']['name']}: {e.message}")


def test_kubernetes_validate_rejects_a_broken_manifest():
    deployment = _by_name("Deployment", "taxi-serving-stable")
    broken = yaml.safe_load(yaml.safe_dump(deployment))
    broken["spec"]["replica"] = broken["spec"].pop("replicas")  # typo: strict rejects it
    with pytest.raises(k8s_validate.ValidationError):
        k8s_validate.validate(broken, K8S_VERSION, strict=True)
    broken = yaml.safe_load(yaml.safe_dump(deployment))
    broken["spec"]["template"]["spec"]["containers"][0]["ports"][0]["containerPort"] = "8500"
    with pytest.raises(k8s_validate.ValidationError):
        k8s_validate.validate(broken, K8S_VERSION, strict=True)


def test_watch_cronjob_runs_flags_that_exist():
    job = _by_name("CronJob", "taxi-monitor-watch")["spec"]
    assert job["concurrencyPolicy"] == "Forbid"
    container = job["jobTemplate"]["spec"]["template"]["spec"]["containers"][0]
    assert container["command"] == ["taxi-monitor", "watch"]
    args = cli.build_parser().parse_args(["watch", *container["args"]])
    assert args.max_checks == 1 and args.output_dir == "/runs/tfx_runs"
    from pipeline.local_runner import parse_args

    pipeline = parse_args(args.pipeline_arg)
    assert pipeline.serving_dir == "/models/taxi"
    volumes = job["jobTemplate"]["spec"]["template"]["spec"]["volumes"]
    claims = {v["persistentVolumeClaim"]["claimName"] for v in volumes}
    for claim in claims:
        _by_name("PersistentVolumeClaim", claim)


def test_serving_deployments_match_the_route():
    route = _by_name("HTTPRoute", "taxi-serving")
    refs = route["spec"]["rules"][0]["backendRefs"]
    assert [r["name"] for r in refs] == [k8s_route.STABLE_BACKEND, k8s_route.CANARY_BACKEND]
    for ref in refs:
        service = _by_name("Service", ref["name"])
        assert ref["port"] in [p["port"] for p in service["spec"]["ports"]]
        deployment = _by_name("Deployment", ref["name"])
        labels = deployment["spec"]["template"]["metadata"]["labels"]
        assert service["spec"]["selector"].items() <= labels.items()
        volumes = deployment["spec"]["template"]["spec"]["volumes"]
        config = next(v["configMap"]["name"] for v in volumes if "configMap" in v)
        assert config == f"{ref['name']}-config"
        _by_name("ConfigMap", config)


def _renderer():
    spec = importlib.util.spec_from_file_location(
        "render_k8s_configmaps", os.path.join(ROOT, "scripts", "render_k8s_configmaps.py")
    )
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_monitoring_configmaps_are_rendered_from_deploy():
    renderer = _renderer()
    assert renderer.main(["--check"]) == 0, "run python scripts/render_k8s_configmaps.py"
    for name, folder in renderer.SOURCES.items():
        deployment = _by_name("Deployment", name.rsplit("-config", 1)[0])
        volumes = deployment["spec"]["template"]["spec"]["volumes"]
        assert name in [v.get("configMap", {}).get("name") for v in volumes]
        if os.path.isdir(folder):
            _by_name("ConfigMap", name)


def test_renderer_replaces_loopback_addresses(tmp_path, monkeypatch):
    renderer = _renderer()
    (tmp_path / "prometheus").mkdir()
    (tmp_path / "prometheus" / "prometheus.yml").write_text(
        "rule_files: [alerts.yml]\n"
        "alerting:\n  alertmanagers:\n    - static_configs:\n        - targets: ['127.0.0.1:9093']\n"
        "scrape_configs:\n  - job_name: server\n    static_configs:\n"
        "      - targets: ['127.0.0.1:8501', 'localhost:7777']\n"
    )
    (tmp_path / "prometheus" / "README.md").write_text("not a config\n")
    monkeypatch.setattr(
        renderer,
        "SOURCES",
        {"taxi-prometheus-config": str(tmp_path / "prometheus"), "x": str(tmp_path / "none")},
    )
    text = renderer.render()
    docs = list(yaml.safe_load_all(text))
    assert len(docs) == 1 and list(docs[0]["data"]) == ["prometheus.yml"]
    config = yaml.safe_load(docs[0]["data"]["prometheus.yml"])
    assert config["alerting"]["alertmanagers"][0]["static_configs"][0]["targets"] == [
        "taxi-alertmanager:9093"
    ]
    assert config["scrape_configs"][0]["static_configs"][0]["targets"] == [
        "taxi-serving-stable:8501",
        "taxi-serving-canary:8501",
        "localhost:7777",
    ]
    assert "# loopback address without a Service, kept: prometheus.yml: localhost:7777" in text
    k8s_validate.validate(docs[0], K8S_VERSION, strict=True)
