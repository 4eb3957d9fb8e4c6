"""`shockproof-traces serve` as a real process: it answers on loopback and stops cleanly."""

from __future__ import annotations

import re
import signal
import subprocess
import sys
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

from .scenario import Scenario


@pytest.fixture
def served_process(scenario: Scenario, tmp_path: Path) -> Iterator[tuple[subprocess.Popen[str], str]]:
    """The viewer started with --port 0 and a token file; yields the process and its URL."""
    token_file = tmp_path / "viewer.token"
    token_file.write_text("process-token\n")
    proc = subprocess.Popen([sys.executable, "-m", "telemetry.viewer", "serve", "--store",
                             str(scenario.store), "--port", "0", "--token-file", str(token_file)],
                            stderr=subprocess.PIPE, stdout=subprocess.DEVNULL, text=True)
    assert proc.stderr is not None
    banner = proc.stderr.readline()
    found = re.search(r" on (http://127\.0\.0\.1:\d+/)", banner)
    assert found is not None, banner
    yield proc, found.group(1)
    if proc.poll() is None:
        proc.kill()
        proc.wait(10)
    proc.stderr.close()


def test_serve_answers_with_the_token_and_stops_on_sigterm(
        served_process: tuple[subprocess.Popen[str], str]) -> None:
    """The page needs the token; with it the errors page answers; SIGTERM exits 0."""
    proc, url = served_process
    with pytest.raises(urllib.error.HTTPError) as refused:
        urllib.request.urlopen(url, timeout=10)
    assert refused.value.code == 401
    refused.value.close()
    request = urllib.request.Request(url, headers={"Authorization": "Bearer process-token"})
    with urllib.request.urlopen(request, timeout=10) as response:
        assert response.status == 200
        assert b"ZeroDivisionError" in response.read()
        assert response.headers["Content-Security-Policy"].startswith("default-src 'self'")
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(10) == 0
