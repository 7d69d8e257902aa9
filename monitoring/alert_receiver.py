"""Alertmanager's webhook, which logs and acts (the `taxi-monitor alert-receiver` command).

    taxi-monitor alert-receiver --metadata tfx_runs/metadata.sqlite --model-config models.config \
        --log-file alerts.jsonl --listen 127.0.0.1:9095

`POST /alerts` takes Alertmanager's webhook payload (version 4). Every alert
of every notification is appended to `--log-file` as a JSON line (firing and
resolved; repeats too, with `"handled"` saying what was done). A firing alert
with an `action` label is acted on once per alert episode, i.e. per
(fingerprint, startsAt): Alertmanager repeats a firing alert every
`repeat_interval` and retries failed notifications, and a new episode starts
only after the alert resolved.

* `action="rollback"`: `taxi-monitor rollback` of the alert's `model_name`
  (monitoring/rollback.py): the previous blessed version is pinned in the
  server's model config file; a `Rollback` execution in MLMD.
* `action="canary_abort"`: `taxi-monitor canary abort` (monitoring/canary.py);
  a `Canary` execution with action `abort`. An alert whose `version` label is
  not the live canary any more is stale and ignored.

The MLMD record is also the memory of what was done: the execution's
`requested_by` is `alertmanager:<alertname>/<fingerprint>@<startsAt>`, and an
episode already recorded is not acted on again (also after a restart of the
receiver). Actions run one at a time. If the store fails after the model
config was changed (answer 503, Alertmanager retries), the episode counts as
done in this process, so the retry does not roll back a second version.

Answers: 200 done (or nothing to do); 400 not a webhook payload; 422 the
action was refused (e.g. no older blessed version; Alertmanager does not
retry 4xx); 503 the metadata store failed (Alertmanager retries).
"""

from __future__ import annotations

import datetime
import hashlib
import http.server
import json
import logging
import threading

from ml_metadata import errors as mlmd_errors

from monitoring import canary, rollback

log = logging.getLogger(__name__)
ACTIONS = ("rollback", "canary_abort")
REQUESTER_PREFIX = "alertmanager:"


class PayloadError(ValueError):
    """The body is not an Alertmanager webhook payload."""


def parse_payload(body: bytes) -> list[dict]:
    """The alerts of a webhook payload, each with labels, status, startsAt, fingerprint.

    Raises:
      PayloadError: not JSON, or no `alerts` list of objects with `labels`.
    """
    try:
        payload = json.loads(body)
    except ValueError as e:
        raise PayloadError(f"body is not JSON: {e}") from None
    if not isinstance(payload, dict) or not isinstance(payload.get("alerts"), list):
        raise PayloadError('expected a JSON object with an "alerts" list')
    alerts = []
    for i, alert in enumerate(payload["alerts"]):
        if not isinstance(alert, dict) or not isinstance(alert.get("labels"), dict):
            raise PayloadError(f"alerts[{i}] has no labels object")
        if alert.get("status") not in ("firing", "resolved"):
            raise PayloadError(f"alerts[{i}].status is {alert.get('status')!r}")
        if not alert.get("startsAt"):
            raise PayloadError(f"alerts[{i}] has no startsAt")
        fingerprint = (
            alert.get("fingerprint")
            or hashlib.sha256(json.dumps(alert["labels"], sort_keys=True).encode()).hexdigest()[:16]
        )
        alerts.append(dict(alert, fingerprint=fingerprint))
    return alerts


def episode(alert: dict) -> str:
    """`<alertname>/<fingerprint>@<startsAt>`: one firing episode of one alert."""
    return f"{alert['labels'].get('alertname', '')}/{alert['fingerprint']}@{alert['startsAt']}"


def recorded_requesters(store, type_name: str) -> set[str]:
    """`requested_by` of every execution of `type_name` in MLMD."""
    try:
        executions = store.get_executions_by_type(type_name)
    except mlmd_errors.NotFoundError:
        return set()
    return {e.properties["requested_by"].string_value for e in executions}


class ActionRefused(Exception):
    """The action cannot be done; retrying the same notification will not help."""


class Receiver:
    """Logs alerts and runs their actions once per episode (thread-safe)."""

    def __init__(self, metadata: str, model_config: str, log_file: str | None = None):
        self.metadata = metadata
        self.model_config = model_config
        self.log_file = log_file
        self._lock = threading.Lock()
        self._done: set[str] = set()  # episodes acted on by this process

    def handle(self, alerts: list[dict]) -> list[dict]:
        """Acts on and logs `alerts`; returns one log record per alert.

        Raises:
          ActionRefused: an action was refused (the others were still done).
          mlmd_errors.StatusError, OSError: the store or a file failed (retry).
        """
        records, refused = [], []
        with self._lock:
            for alert in alerts:
                record = {
                    "received": datetime.datetime.now(datetime.timezone.utc).isoformat(),
                    "status": alert["status"],
                    "alertname": alert["labels"].get("alertname"),
                    "labels": alert["labels"],
                    "startsAt": alert["startsAt"],
                    "fingerprint": alert["fingerprint"],
                    "summary": (alert.get("annotations") or {}).get("summary", ""),
                }
                action = alert["labels"].get("action")
                if alert["status"] == "firing" and action in ACTIONS:
                    try:
                        record["handled"] = self._act(action, alert)
                    except ActionRefused as e:
                        record["handled"] = f"refused: {e}"
                        refused.append(str(e))
                self._log(record)
                records.append(record)
        if refused:
            raise ActionRefused("; ".join(refused))
        return records

    def _act(self, action: str, alert: dict) -> str:
        labels = alert["labels"]
        model_name = labels.get("model_name")
        if not model_name:
            raise ActionRefused(f"{labels.get('alertname')}: no model_name label")
        requested_by = REQUESTER_PREFIX + episode(alert)
        reason = f"{labels.get('alertname')}: {(alert.get('annotations') or {}).get('summary', '')}"
        execution_type = rollback.EXECUTION_TYPE if action == "rollback" else canary.EXECUTION_TYPE
        try:
            store = rollback.writable_store(self.metadata)
            if requested_by in self._done or requested_by in recorded_requesters(
                store, execution_type
            ):
                return "already done for this episode"
            before = _read(self.model_config)
            try:
                if action == "rollback":
                    acted, done = self._rollback(model_name, reason, requested_by)
                else:
                    acted, done = self._abort_canary(labels, model_name, reason, requested_by)
            except mlmd_errors.StatusError:
                # The config may already be changed with the record missing: the
                # retry must not act a second time.
                if _read(self.model_config) != before:
                    self._done.add(requested_by)
                raise
            if acted:
                self._done.add(requested_by)
            return done
        except rollback.RollbackError as e:
            raise ActionRefused(f"{action} of {model_name}: {e}") from None
        except (OSError, ValueError) as e:  # an unreadable config file: nothing changed
            raise ActionRefused(f"{action} of {model_name}: {e}") from None

    def _rollback(self, model_name: str, reason: str, requested_by: str):
        """(True, what happened); RollbackError when refused."""
        result = rollback.rollback(
            self.metadata, self.model_config, model_name, reason, requested_by
        )
        return True, (
            f"rolled back {model_name} {result['from_version']} -> "
            f"{result['to_version']} (MLMD execution {result['execution_id']})"
        )

    def _abort_canary(self, labels: dict, model_name: str, reason: str, requested_by: str):
        """(aborted?, what happened)."""
        entry = rollback.model_entry(rollback.read_config(self.model_config), model_name)
        live = entry.version_labels.get("canary")
        if not live:
            return False, "no canary is live: nothing to abort"
        if labels.get("version") and labels["version"] != str(live):
            return False, f"stale: the live canary is {live}, not {labels['version']}"
        result = canary.finish(
            self.metadata, self.model_config, model_name, "abort", reason, requested_by
        )
        return True, (
            f"aborted canary {result['candidate']} of {model_name}, stable "
            f"{result['stable']} (MLMD execution {result['execution_id']})"
        )

    def _log(self, record: dict) -> None:
        line = json.dumps(record, sort_keys=True)
        print(line, flush=True)
        if self.log_file:
            with open(self.log_file, "a") as f:
                f.write(line + "\n")


def _read(path: str) -> str | None:
    try:
        with open(path) as f:
            return f.read()
    except OSError:
        return None


def make_handler(receiver: Receiver):
    """A BaseHTTPRequestHandler class serving `POST /alerts` and `GET /healthz`."""

    class Handler(http.server.BaseHTTPRequestHandler):
        def _answer(self, status: int, body: dict) -> None:
            data = json.dumps(body).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def do_GET(self):  # noqa: N802 - http.server's name
            if self.path == "/healthz":
                self._answer(200, {"status": "ok"})
            else:
                self._answer(404, {"error": f"no such path: {self.path}"})

        def do_POST(self):  # noqa: N802
            if self.path != "/alerts":
                self._answer(404, {"error": f"no such path: {self.path} (POST /alerts)"})
                return
            length = int(self.headers.get("Content-Length") or 0)
            try:
                alerts = parse_payload(self.rfile.read(length))
                records = receiver.handle(alerts)
            except PayloadError as e:
                self._answer(400, {"error": str(e)})
            except ActionRefused as e:
                self._answer(422, {"error": str(e)})
            except (mlmd_errors.StatusError, OSError) as e:
                log.warning("alert not handled, Alertmanager will retry: %s", e)
                self._answer(503, {"error": f"try again: {e}"})
            else:
                self._answer(200, {"handled": [r.get("handled") for r in records]})

        def log_message(self, fmt, *args):
            log.debug("%s " + fmt, self.address_string(), *args)

    return Handler


def serve(receiver: Receiver, host: str, port: int) -> http.server.ThreadingHTTPServer:
    """Binds the server (port 0: any free port); call `serve_forever` on it."""
    return http.server.ThreadingHTTPServer((host, port), make_handler(receiver))
