"""Runtimes that exist only to drive the harness's failure paths (registered by the tests, run in real worker
processes). They compute a real numpy product so that timing runs; none of their numbers is a product result."""

from __future__ import annotations

import os
import time

import numpy as np

from rtml_profile.runtimes.base import Capabilities, InputSpec, Probe, Runtime


class FakeGood(Runtime):
    name = "fake"
    caps = Capabilities(device="cpu", precisions=("fp32",))

    @classmethod
    def probe(cls) -> Probe:
        return Probe(True, "", "0.0")

    def load(self):
        feat = self.model.in_features or 4
        self.w = np.ones((feat, 3), np.float32)
        self.inputs, self.outputs = [InputSpec("x", ("batch", feat))], ["y"]
        self.calls = 0

    def _forward(self, x):
        self.calls += 1
        return x @ self.w

    def runner(self, scope, x):
        x = self.feeds(x)["x"]
        return lambda: self._forward(x)

    def predict(self, x):
        return self._forward(x)

    def infer(self, x):
        return {"y": self.predict(self.feeds(x)["x"])}


class FakeSlow(FakeGood):
    """Every call takes RTML_FAKE_SLOW_S seconds (a sleep; default 8 ms): slower than a fast camera's frame period,
    so frames queue (or are dropped) behind it."""

    def _forward(self, x):
        time.sleep(float(os.environ.get("RTML_FAKE_SLOW_S", "0.008")))
        return super()._forward(x)


class FakeLoadFails(FakeGood):
    def load(self):
        raise RuntimeError("fake runtime: the model could not be loaded")


class FakeRaisesMidRun(FakeGood):
    def _forward(self, x):
        super()._forward(x)
        if self.calls > 5:
            raise RuntimeError("fake runtime: failed in the middle of the run")
        return x @ self.w


class FakeWrongShape(FakeGood):
    def predict(self, x):
        return np.zeros((len(x), 7), np.float32)


class FakeNaN(FakeGood):
    def predict(self, x):
        return np.full((len(x), 1), np.nan, np.float32)


class FakeAbort(FakeGood):
    """Kills its own process (SIGABRT, as a native library's assertion would) on the 20th call."""

    def _forward(self, x):
        if self.calls >= 20:
            os.abort()
        return super()._forward(x)


class FakeUnavailable(FakeGood):
    @classmethod
    def probe(cls) -> Probe:
        return Probe(False, "fake runtime: not available here, for a reason")
