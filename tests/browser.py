"""Headless Chromium driven over the DevTools protocol: open a page, run script in it, send
its forms as a reader would (the browser sets Origin, follows the answer, renders it).
Chromium is a Debian package `.ci/run` installs; without it the test skips locally and
fails in CI."""

from __future__ import annotations

import json
import subprocess
import time
from pathlib import Path
from typing import Any

import websocket

from tests.helpers import CHROMIUM_FLAGS, need, within


class Browser:
    def __init__(self, profile: Path) -> None:
        profile.mkdir(parents=True, exist_ok=True)
        self.process = subprocess.Popen(
            [need("chromium"), *CHROMIUM_FLAGS, f"--user-data-dir={profile}", "--remote-debugging-port=0"],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        active = profile / "DevToolsActivePort"

        def opened() -> bool:
            return active.exists() and len(active.read_text().split()) == 2

        within(lambda: opened() or self.process.poll() is not None, 30, every=0.05)
        if not opened():
            self.process.kill()
            raise RuntimeError("chromium did not open its DevTools port")
        port, path = active.read_text().split()
        self.socket = websocket.create_connection(f"ws://127.0.0.1:{port}{path}", timeout=30)
        self.next_id = 0
        self.events: list[dict[str, Any]] = []
        self.session: str | None = None
        target = self.call("Target.createTarget", url="about:blank")["targetId"]
        self.session = self.call("Target.attachToTarget", targetId=target, flatten=True)["sessionId"]
        self.call("Page.enable")

    def __enter__(self) -> Browser:
        return self

    def __exit__(self, *exc: object) -> None:
        self.socket.close()
        self.process.terminate()
        self.process.wait(timeout=10)

    def call(self, method: str, **params: Any) -> dict[str, Any]:
        self.next_id += 1
        message: dict[str, Any] = {"id": self.next_id, "method": method, "params": params}
        if self.session and not method.startswith("Target."):
            message["sessionId"] = self.session
        self.socket.send(json.dumps(message))
        while True:
            answer = json.loads(self.socket.recv())
            if answer.get("id") == self.next_id:
                if "error" in answer:
                    raise RuntimeError(f"{method}: {answer['error']}")
                return answer.get("result", {})  # type: ignore[no-any-return]
            self.events.append(answer)

    def _loaded(self, timeout: float = 30) -> None:
        deadline = time.monotonic() + timeout
        while not any(e.get("method") == "Page.loadEventFired" for e in self.events):
            if time.monotonic() > deadline:
                raise TimeoutError("the page did not load")
            self.events.append(json.loads(self.socket.recv()))

    def open(self, url: str) -> None:
        self.events.clear()
        self.call("Page.navigate", url=url)
        self._loaded()

    def run(self, script: str) -> Any:
        """The value of ``script`` in the page."""
        found = self.call("Runtime.evaluate", expression=script, returnByValue=True)
        if "exceptionDetails" in found:
            raise RuntimeError(f"script failed: {found['exceptionDetails']}")
        return found["result"].get("value")

    def choose(self, name: str, value: str) -> None:
        """Pick ``value`` in the form field ``name`` (a select, or a text box)."""
        self.run(f"document.querySelector('[name={name}]').value = {json.dumps(value)}")
        assert self.run(f"document.querySelector('[name={name}]').value") == value, f"{name} has no {value!r}"

    def submit(self) -> None:
        """Send the page's form with its submit button, and wait for the answer to load."""
        self.events.clear()
        self.run("document.querySelector('form button[type=submit]').click()")
        self._loaded()

    def text(self, selector: str = "body") -> str:
        return str(self.run(f"document.querySelector({json.dumps(selector)}).innerText"))
