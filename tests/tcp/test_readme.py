"""The README's two programs across processes run as written: a server and a client over TCP.

They are the blocks marked ``<!-- process: server -->`` and ``<!-- process: client -->``
(see `tests._readme`), run as two OS processes on loopback. One change is made to what
is written: the server listens on port 0 instead of 7400 (so nothing else on the machine
can hold the port), prints the port it bound, and the client is given that port.
"""

from __future__ import annotations

import os
import re
import selectors
import subprocess
import time
from pathlib import Path

from tests._readme import (
    RUN_TIMEOUT,
    Block,
    environment,
    failure,
    python_command,
    readme_blocks,
    write_program,
)

README_URL = "tcp://127.0.0.1:7400"


def block_of(role: str) -> Block:
    (block,) = [b for b in readme_blocks() if b.marker == "process" and b.argument == role]
    return block


def read_line(process: subprocess.Popen[bytes], timeout: float) -> str:
    """The next line the process writes to stdout ("" at end of file), within ``timeout``."""
    assert process.stdout is not None
    deadline = time.monotonic() + timeout
    line = b""
    with selectors.DefaultSelector() as selector:
        selector.register(process.stdout, selectors.EVENT_READ)
        while not line.endswith(b"\n"):
            remaining = deadline - time.monotonic()
            assert remaining > 0, "no line within the timeout"
            assert selector.select(remaining), "no line within the timeout"
            chunk = os.read(process.stdout.fileno(), 4096)  # never more than is there
            if not chunk:
                break
            line += chunk
    return line.decode()


def test_readme_server_and_client_run_as_two_processes(tmp_path: Path) -> None:
    server_block, client_block = block_of("server"), block_of("client")
    server_program = write_program(server_block, tmp_path, {README_URL: "tcp://127.0.0.1:0"})
    server = subprocess.Popen(
        python_command(server_program),
        cwd=tmp_path,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env=environment(),
    )
    try:
        first = read_line(server, RUN_TIMEOUT)
        bound = re.fullmatch(r"serving on (tcp://127\.0\.0\.1:(\d+))\n", first)
        assert bound is not None, failure(server_block, first, "")
        assert [first.rstrip("\n").replace(bound[1], README_URL)] == server_block.expected_output

        client_program = write_program(client_block, tmp_path, {README_URL: bound[1]})
        client = subprocess.run(
            python_command(client_program),
            cwd=tmp_path,
            capture_output=True,
            encoding="utf-8",
            env=environment(),
            timeout=RUN_TIMEOUT,
            check=False,
        )
        assert client.returncode == 0, failure(client_block, client.stdout, client.stderr)
        assert client.stdout.splitlines() == client_block.expected_output
        assert client.stdout == "hello, world! from process server\n"
        assert server.poll() is None, "the server stopped serving"
    finally:
        server.kill()
        _, server_stderr = server.communicate(timeout=RUN_TIMEOUT)
    assert server.returncode == -9, server_stderr.decode()
