"""The broker going away: clear errors, nothing hangs, traffic resumes by itself.

The test broker keeps everything in memory, so a restart is the worst case a real
cluster never shows: every topic and committed offset is gone, and the broker no longer
knows the producers. The transport notices the re-created topics (their IDs change),
reads them from 0, announces its process again and rebuilds its producer. The scenario
runs in a process of its own (``_outage_child.py`` says why).
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

CHILD = Path(__file__).with_name("_outage_child.py")
#: The detector's bound (the child's heartbeat interval x tolerance, 0.2 s x 10) plus
#: the broker's round trips.
DETECTED = 0.2 * 10 + 2.0


@pytest.mark.parametrize("backend", ["asyncio", "trio"])
def test_requests_fail_clearly_while_the_broker_is_down_and_resume_after(backend: str) -> None:
    completed = subprocess.run(
        [sys.executable, str(CHILD), backend],
        capture_output=True,
        text=True,
        timeout=90,
        check=False,
    )
    assert completed.returncode == 0, completed.stderr[-4000:]
    result = json.loads(completed.stdout.strip().splitlines()[-1])
    assert (result["before"], result["after"]) == ("before", "after")
    # A request to a process nobody can reach fails, and soon: it never hangs.
    assert result["during"] in ("PeerLostError", "UndeliverableError")
    assert result["failed_after"] < DETECTED


RESTART_CHILD = Path(__file__).with_name("_restart_child.py")


@pytest.mark.parametrize("backend", ["asyncio", "trio"])
def test_letters_across_a_broker_restart_arrive_once_each_in_order(backend: str) -> None:
    # The restarted broker lost its state and refuses what the producer held through the
    # outage: those frames are sent again, in order, by a rebuilt producer.
    completed = subprocess.run(
        [sys.executable, str(RESTART_CHILD), backend],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert completed.returncode == 0, completed.stderr[-4000:]
    result = json.loads(completed.stdout.strip().splitlines()[-1])
    received: list[int] = result["received"]
    # Never twice, never reordered (the message shows where, and what was resent).
    anomalies = [received[max(0, i - 3) : i + 4] for i in range(1, len(received))
                 if received[i] <= received[i - 1]]  # fmt: skip
    assert not anomalies, (anomalies[:5], result["resent"], result["recreated"])
    # Before the outage and after the return: every letter.
    assert set(range(200)) | set(range(400, 600)) <= set(received)
    # Sent while the broker was down: delivered, or given up on (reported lost).
    missing = set(range(200, 400)) - set(received)
    assert not missing or result["lost_reports"], (sorted(missing), result["recreated"])
