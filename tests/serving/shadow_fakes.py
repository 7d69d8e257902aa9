"""Stand-ins for the shadow's servables and model manager (tests only)."""

import threading

from serving.errors import Code, ServingError


class FakeSignature:
    key = "serving_default"


class FakeServable:
    """y = a * x; optionally hangs until `release`, or raises."""

    def __init__(self, version, a=1.0, hang=False, fail=False):
        self.name = "m"
        self.version = version
        self.a = a
        self.signatures = {"serving_default": FakeSignature()}
        self.entered, self.release = threading.Event(), threading.Event()
        self.hang, self.fail = hang, fail
        self.threads = []
        self.batches = []  # rows per run
        self.inflight = 0

    def enter(self):
        self.inflight += 1

    def exit(self):
        self.inflight -= 1

    def run(self, signature, feeds):
        self.threads.append(threading.current_thread().name)
        self.batches.append(feeds["x"].shape[0] if feeds["x"].ndim else 1)
        self.entered.set()
        if self.hang:
            assert self.release.wait(60)
        if self.fail:
            raise RuntimeError("boom")
        return {"y": feeds["x"] * self.a}


class FakeManager:
    def __init__(self, *servables):
        self.servables = {s.version: s for s in servables}

    def resolve(self, name, version=None, label=None):
        if version not in self.servables:
            raise ServingError(Code.NOT_FOUND, "no such version")
        return self.servables[version]
