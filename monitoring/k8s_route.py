"""Canary and shadow on Kubernetes: render the Gateway API route and the version pins.

With the official TF Serving image the traffic split is not the server's job.
Two Deployments serve the Pusher's directory (deploy/k8s/canary/serving.yaml):
`taxi-serving-stable` and `taxi-serving-canary`, each pinned to one version by
the `models.config` of its ConfigMap (`<backend>-config`,
`model_version_policy { specific { versions: N } }`; TF Serving re-reads it
every `--model_config_file_poll_wait_seconds`). A Gateway API `HTTPRoute`
sends the requests to them with weighted `backendRefs` (the canary's share)
and, for shadow traffic, a `RequestMirror` filter that copies a percentage
of the requests to the canary; the gateway discards the mirrored responses,
so the client only ever sees the stable answer.

`--k8s-manifest FILE` (deploy/k8s/canary/route.yaml) holds the two ConfigMaps
and the HTTPRoute. `taxi-monitor canary deploy|route|promote|abort
--k8s-manifest FILE` rewrites it; applying it (`kubectl apply -f FILE`, or a
GitOps controller) is the operator's step. Each action is recorded in ML
Metadata as a `Canary` execution, as the file-based canary does.

Gateway API CRD schemas are not in `kubernetes-validate`; `check_route`
enforces the v1 constraints this module relies on (see its docstring).

Over 400 lines: rendering the HTTPRoute and version-pin ConfigMaps, and ``check_route``:
the Gateway API v1 constraints no installed schema validates (about 100 lines), which
guard exactly what the rendering writes.
"""

from __future__ import annotations

import copy
import dataclasses

import yaml
from google.protobuf import text_format

from serving import config as serving_config

STABLE_BACKEND = "taxi-serving-stable"
CANARY_BACKEND = "taxi-serving-canary"
MODELS_CONFIG_KEY = "models.config"
HEADER = (
    "# Rendered by `taxi-monitor canary ... --k8s-manifest` (monitoring/k8s_route.py):\n"
    "# the version each serving Deployment pins and the HTTPRoute that splits (weights)\n"
    "# and mirrors (RequestMirror) the traffic. Apply with: kubectl apply -f <this file>\n"
)

# Gateway API v1 (HTTPRoute CRD, standard channel) limits checked by check_route.
MAX_WEIGHT = 1_000_000
MAX_BACKEND_REFS = 16
MAX_FILTERS = 16
MAX_RULES = 16
MAX_PARENT_REFS = 32
FILTER_TYPES = {
    "RequestHeaderModifier",
    "ResponseHeaderModifier",
    "RequestMirror",
    "RequestRedirect",
    "URLRewrite",
    "ExtensionRef",
}
RULE_KEYS = {"name", "matches", "filters", "backendRefs", "timeouts", "retry", "sessionPersistence"}
BACKEND_REF_KEYS = {"group", "kind", "name", "namespace", "port", "weight", "filters"}


class RouteError(ValueError):
    """The manifest cannot be read or the change is not allowed (nothing is written)."""


@dataclasses.dataclass(frozen=True)
class RouteState:
    """What the manifest says: the versions pinned and how the traffic goes.

    `canary_weight` is the canary's percentage of the requests (the stable
    backend gets the rest); `mirror_percent` the share copied to the canary
    as shadow traffic (None: no RequestMirror filter).
    """

    stable: int
    canary: int
    canary_weight: int
    mirror_percent: int | None


def load(path: str) -> list[dict]:
    """The YAML documents of `path` (empty documents dropped)."""
    try:
        with open(path) as f:
            docs = [d for d in yaml.safe_load_all(f) if d]
    except (OSError, yaml.YAMLError) as e:
        raise RouteError(f"k8s manifest {path}: {e}") from None
    return docs


class _Dumper(yaml.SafeDumper):
    """Multi-line strings (the config files in ConfigMaps) as `|` blocks."""


def _str(dumper: yaml.SafeDumper, value: str):
    style = "|" if "\n" in value else None
    return dumper.represent_scalar("tag:yaml.org,2002:str", value, style=style)


_Dumper.add_representer(str, _str)


def dump(docs: list[dict]) -> str:
    """The manifest text: the header, then the documents in order."""
    return HEADER + yaml.dump_all(
        docs, Dumper=_Dumper, sort_keys=False, default_flow_style=False, indent=2
    )


def _find(docs: list[dict], kind: str, name: str | None = None) -> dict:
    found = [
        d
        for d in docs
        if d.get("kind") == kind and (name is None or d.get("metadata", {}).get("name") == name)
    ]
    if len(found) != 1:
        what = f"{kind} {name}" if name else kind
        raise RouteError(f"the manifest must hold exactly one {what} (found {len(found)})")
    return found[0]


def _rule(route: dict) -> dict:
    """The rule whose backendRefs are the stable and the canary backends."""
    for rule in route.get("spec", {}).get("rules", []):
        names = [ref.get("name") for ref in rule.get("backendRefs", [])]
        if sorted(names) == sorted([STABLE_BACKEND, CANARY_BACKEND]):
            return rule
    raise RouteError(
        f"HTTPRoute {route.get('metadata', {}).get('name')} has no rule with exactly the "
        f"backendRefs {STABLE_BACKEND} and {CANARY_BACKEND}"
    )


def _entry(config_map: dict, model_name: str):
    text = config_map.get("data", {}).get(MODELS_CONFIG_KEY)
    name = config_map["metadata"]["name"]
    if text is None:
        raise RouteError(f"ConfigMap {name} has no {MODELS_CONFIG_KEY}")
    try:
        server_config = serving_config.parse_model_config(text)
    except ValueError as e:
        raise RouteError(f"ConfigMap {name}: {e}") from None
    for entry in server_config.model_config_list.config:
        if entry.name == model_name:
            return server_config, entry
    raise RouteError(f"ConfigMap {name}: model {model_name!r} is not in {MODELS_CONFIG_KEY}")


def pinned(config_map: dict, model_name: str) -> int:
    """The one version the ConfigMap's models.config pins for `model_name`."""
    _, entry = _entry(config_map, model_name)
    policy = entry.model_version_policy
    if policy.WhichOneof("policy_choice") != "specific" or len(policy.specific.versions) != 1:
        raise RouteError(
            f"ConfigMap {config_map['metadata']['name']}: {model_name} must pin one version "
            f"(model_version_policy {{ specific {{ versions: N }} }})"
        )
    return int(policy.specific.versions[0])


def _pin(config_map: dict, model_name: str, version: int) -> None:
    server_config, entry = _entry(config_map, model_name)
    entry.model_version_policy.Clear()
    entry.model_version_policy.specific.versions.append(version)
    entry.version_labels.clear()
    config_map["data"][MODELS_CONFIG_KEY] = text_format.MessageToString(server_config)


def _mirror_filters(rule: dict) -> list[dict]:
    return [f for f in rule.get("filters", []) if f.get("type") == "RequestMirror"]


def state(docs: list[dict], model_name: str) -> RouteState:
    """Reads the versions, the canary's weight and the mirror share from the manifest."""
    rule = _rule(_find(docs, "HTTPRoute"))
    weights = {ref["name"]: int(ref.get("weight", 1)) for ref in rule["backendRefs"]}
    total = weights[STABLE_BACKEND] + weights[CANARY_BACKEND]
    if total <= 0:
        raise RouteError("both backendRefs have weight 0: the route would answer 500")
    mirrors = _mirror_filters(rule)
    mirror = None
    if mirrors:
        spec = mirrors[0]["requestMirror"]
        fraction = spec.get("fraction")
        if fraction:  # numerator/denominator (denominator defaults to 100)
            mirror = round(100 * fraction["numerator"] / fraction.get("denominator", 100))
        else:
            mirror = int(spec.get("percent", 100))
    return RouteState(
        stable=pinned(_find(docs, "ConfigMap", f"{STABLE_BACKEND}-config"), model_name),
        canary=pinned(_find(docs, "ConfigMap", f"{CANARY_BACKEND}-config"), model_name),
        canary_weight=round(100 * weights[CANARY_BACKEND] / total),
        mirror_percent=mirror,
    )


def render(docs: list[dict], model_name: str, target: RouteState) -> list[dict]:
    """A copy of `docs` set to `target` (other fields and documents are kept)."""
    for name, value in (("canary_weight", target.canary_weight), ("mirror", target.mirror_percent)):
        if value is not None and not 0 <= value <= 100:
            raise RouteError(f"{name} must be a percentage in [0, 100], got {value}")
    if target.canary_weight > 0 and target.canary == target.stable:
        raise RouteError("no canary to send traffic to: the canary serves the stable version")
    docs = copy.deepcopy(docs)
    _pin(_find(docs, "ConfigMap", f"{STABLE_BACKEND}-config"), model_name, target.stable)
    _pin(_find(docs, "ConfigMap", f"{CANARY_BACKEND}-config"), model_name, target.canary)
    rule = _rule(_find(docs, "HTTPRoute"))
    for ref in rule["backendRefs"]:
        canary = ref["name"] == CANARY_BACKEND
        ref["weight"] = target.canary_weight if canary else 100 - target.canary_weight
    filters = [f for f in rule.get("filters", []) if f.get("type") != "RequestMirror"]
    if target.mirror_percent:
        port = next(r.get("port") for r in rule["backendRefs"] if r["name"] == CANARY_BACKEND)
        mirror = {"backendRef": {"name": CANARY_BACKEND, "port": port}}
        if target.mirror_percent < 100:  # `percent`: Gateway API v1.3+ (standard channel)
            mirror["percent"] = target.mirror_percent
        filters.append({"type": "RequestMirror", "requestMirror": mirror})
    if filters:
        rule["filters"] = filters
    else:
        rule.pop("filters", None)
    problems = check_route(_find(docs, "HTTPRoute"))
    if problems:
        raise RouteError("rendered HTTPRoute is invalid: " + "; ".join(problems))
    return docs


def check_route(route: dict) -> list[str]:
    """Problems of an HTTPRoute against the Gateway API v1 constraints we use.

    Checked: apiVersion `gateway.networking.k8s.io/v1`, kind, a name, 1..32
    parentRefs with names, at most 16 rules, per rule the known keys, at most
    16 backendRefs (known keys, a name, a port in 1..65535, an integer weight in
    0..1000000) and at most 16 filters of a known type; a RequestMirror filter
    needs `requestMirror.backendRef` with a name and a port, and at most one of
    `percent` (0..100) and `fraction` (0 <= numerator <= denominator, denominator
    >= 1). Ours, not the CRD's: the weights of a rule must not all be 0.
    """
    problems = []
    if route.get("apiVersion") != "gateway.networking.k8s.io/v1":
        problems.append(
            f"apiVersion {route.get('apiVersion')!r} is not gateway.networking.k8s.io/v1"
        )
    if route.get("kind") != "HTTPRoute":
        problems.append(f"kind {route.get('kind')!r} is not HTTPRoute")
    if not route.get("metadata", {}).get("name"):
        problems.append("metadata.name is missing")
    spec = route.get("spec") or {}
    parents = spec.get("parentRefs") or []
    if not 1 <= len(parents) <= MAX_PARENT_REFS or not all(p.get("name") for p in parents):
        problems.append(f"spec.parentRefs: 1..{MAX_PARENT_REFS} entries, each with a name")
    rules = spec.get("rules") or []
    if len(rules) > MAX_RULES:
        problems.append(f"spec.rules: {len(rules)} > {MAX_RULES}")
    for i, rule in enumerate(rules):
        where = f"spec.rules[{i}]"
        unknown = set(rule) - RULE_KEYS
        if unknown:
            problems.append(f"{where}: unknown fields {sorted(unknown)}")
        refs = rule.get("backendRefs") or []
        if len(refs) > MAX_BACKEND_REFS:
            problems.append(f"{where}.backendRefs: {len(refs)} > {MAX_BACKEND_REFS}")
        for j, ref in enumerate(refs):
            problems += _check_backend_ref(ref, f"{where}.backendRefs[{j}]", weighted=True)
        if refs and all(ref.get("weight", 1) == 0 for ref in refs):
            problems.append(f"{where}.backendRefs: every weight is 0 (all requests get 500)")
        filters = rule.get("filters") or []
        if len(filters) > MAX_FILTERS:
            problems.append(f"{where}.filters: {len(filters)} > {MAX_FILTERS}")
        for j, f in enumerate(filters):
            problems += _check_filter(f, f"{where}.filters[{j}]")
    return problems


def _is_int(value) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _check_backend_ref(ref: dict, where: str, weighted: bool) -> list[str]:
    problems = []
    unknown = set(ref) - BACKEND_REF_KEYS
    if unknown:
        problems.append(f"{where}: unknown fields {sorted(unknown)}")
    if not ref.get("name") or len(str(ref.get("name"))) > 253:
        problems.append(f"{where}.name: 1..253 characters required")
    port = ref.get("port")
    if ref.get("kind", "Service") == "Service" and not (_is_int(port) and 1 <= port <= 65535):
        problems.append(f"{where}.port: a Service backend needs a port in 1..65535, got {port!r}")
    if weighted and "weight" in ref:
        weight = ref["weight"]
        if not (_is_int(weight) and 0 <= weight <= MAX_WEIGHT):
            problems.append(f"{where}.weight: an integer in 0..{MAX_WEIGHT}, got {weight!r}")
    return problems


def _check_filter(f: dict, where: str) -> list[str]:
    kind = f.get("type")
    if kind not in FILTER_TYPES:
        return [f"{where}.type: {kind!r} is not one of {sorted(FILTER_TYPES)}"]
    if kind != "RequestMirror":
        return []
    mirror = f.get("requestMirror")
    if not isinstance(mirror, dict) or not isinstance(mirror.get("backendRef"), dict):
        return [f"{where}: RequestMirror needs requestMirror.backendRef"]
    problems = _check_backend_ref(mirror["backendRef"], f"{where}.requestMirror.backendRef", False)
    if "weight" in mirror["backendRef"]:
        problems.append(f"{where}.requestMirror.backendRef: a mirror has no weight")
    if "percent" in mirror and "fraction" in mirror:
        problems.append(f"{where}.requestMirror: percent and fraction are exclusive")
    if "percent" in mirror and not (_is_int(mirror["percent"]) and 0 <= mirror["percent"] <= 100):
        problems.append(f"{where}.requestMirror.percent: an integer in 0..100")
    if "fraction" in mirror:
        fraction = mirror["fraction"] or {}
        numerator, denominator = fraction.get("numerator"), fraction.get("denominator", 100)
        if not (
            _is_int(numerator)
            and _is_int(denominator)
            and denominator >= 1
            and 0 <= numerator <= denominator
        ):
            problems.append(
                f"{where}.requestMirror.fraction: 0 <= numerator <= denominator, denominator >= 1"
            )
    return problems


def deploy(current: RouteState, candidate: int, weight: int, mirror: int | None) -> RouteState:
    """The canary Deployment serves `candidate` with `weight`% of the requests
    (0 with `mirror` is shadow only: the candidate sees copies, answers nobody)."""
    if candidate == current.stable:
        raise RouteError(f"version {candidate} is already the stable version")
    if not weight and not mirror:
        raise RouteError("deploy needs a canary weight > 0 or a mirror percentage > 0")
    return RouteState(current.stable, candidate, weight, mirror)


def reroute(current: RouteState, weight: int, mirror: int | None) -> RouteState:
    """New weight / mirror share for the canary already deployed."""
    if current.canary == current.stable:
        raise RouteError(f"no canary is deployed (both Deployments pin {current.stable})")
    return RouteState(current.stable, current.canary, weight, mirror)


def promote(current: RouteState) -> RouteState:
    """The stable Deployment pins the candidate and gets all the traffic."""
    if current.canary == current.stable:
        raise RouteError(f"no canary is deployed (both Deployments pin {current.stable})")
    return RouteState(current.canary, current.canary, 0, None)


def abort(current: RouteState) -> RouteState:
    """Back to the stable version only: the canary pins it again, no weight, no mirror."""
    if current.canary == current.stable:
        raise RouteError(f"no canary is deployed (both Deployments pin {current.stable})")
    return RouteState(current.stable, current.stable, 0, None)


def act(
    action: str,
    manifest: str,
    metadata_path: str,
    model_name: str,
    reason: str,
    requested_by: str,
    candidate: int | None = None,
    weight: int | None = None,
    mirror: int | None = None,
) -> dict:
    """Runs `deploy|route|promote|abort` on the manifest file and records it in MLMD.

    The manifest is rewritten atomically, only after the new route passed
    `check_route`; the execution is recorded after the write.
    """
    import lineage
    from monitoring import canary, rollback

    docs = load(manifest)
    current = state(docs, model_name)
    metadata = rollback.writable(metadata_path)
    if action == "deploy":
        if candidate is None:
            raise RouteError("deploy needs --candidate")
        blessed = {int(v) for v in lineage.pushed_versions(metadata.graph)}
        if candidate not in blessed:
            raise RouteError(f"version {candidate} is not a blessed (pushed) version in MLMD")
        target = deploy(current, candidate, 10 if weight is None else weight, mirror)
    elif action == "route":
        if weight is None and mirror is None:
            raise RouteError("route needs --weight and/or --mirror-percent")
        target = reroute(
            current,
            current.canary_weight if weight is None else weight,
            current.mirror_percent if mirror is None else mirror,
        )
    elif action == "promote":
        target = promote(current)
    elif action == "abort":
        target = abort(current)
    else:
        raise RouteError(f"unknown action {action!r}")
    rendered = render(docs, model_name, target)
    rollback.write_atomically(manifest, dump(rendered))
    changed = target.canary if action == "deploy" else current.canary
    figures = {
        "canary_weight": target.canary_weight,
        "mirror_percent": target.mirror_percent,
        "k8s_manifest": manifest,
    }
    execution_id = canary._record(
        metadata, action, model_name, current.stable, changed, reason, requested_by, figures
    )
    return dict(dataclasses.asdict(target), execution_id=execution_id)
