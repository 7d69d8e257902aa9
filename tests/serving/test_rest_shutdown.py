"""After SIGTERM, REST clients get 503 or a closed connection, never 404."""

import http.client
import json
import os
import signal
import threading
import time

import model_factory
import pytest

BODY = json.dumps({"instances": [[1.0]]})
PATH = "/v1/models/half_plus_two/versions/123:predict"


@pytest.mark.slow
@pytest.mark.ours
def test_keep_alive_clients_never_see_404_while_shutting_down(tmp_path, start_server):
    config = model_factory.write_models(str(tmp_path / "models"))
    server = start_server(
        [f"--model_config_file={config}", "--allow_version_labels_for_unavailable_models=true"],
        ready_model="half_plus_two",
    )
    answers: list = []
    started = threading.Barrier(5)

    def client():
        conn = http.client.HTTPConnection("127.0.0.1", server.rest_port, timeout=60)
        first = True
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            try:
                conn.request("POST", PATH, body=BODY, headers={"Content-Type": "application/json"})
                response = conn.getresponse()
                answers.append((response.status, response.read()))
            except (OSError, http.client.HTTPException):
                break  # closed: a correct way to end
            if first:
                first = False
                started.wait(60)
            if response.will_close:
                break
        conn.close()

    threads = [threading.Thread(target=client) for _ in range(4)]
    for thread in threads:
        thread.start()
    started.wait(60)  # every client has had one answer on its keep-alive connection
    os.kill(server.proc.pid, signal.SIGTERM)
    for thread in threads:
        thread.join(180)
    assert server.proc.wait(60) == 0
    statuses = {status for status, _ in answers}
    assert statuses <= {200, 503}, [a for a in answers if a[0] not in (200, 503)][:3]
    for status, body in answers:
        if status == 503:
            assert json.loads(body) == {"error": "The server is shutting down"}
