"""Ctrl-C under ``make``: only the command in :func:`foreground_terminal` gets it, and make exits 0.

Runs a real make under a pseudo-terminal, as a user's shell would, and types Ctrl-C (0x03).
"""

from __future__ import annotations

import os
import pty
import select
import shutil
import signal
import sys
import time
from pathlib import Path

import pytest

pytestmark = pytest.mark.skipif(shutil.which("make") is None, reason="make is not installed")

SNIPPET = """
import time
from {module} import {name} as foreground_terminal
with foreground_terminal():
    try:  # "ready" inside the try: a Ctrl-C typed right after it is still caught (a loaded machine)
        print("ready", flush=True)
        time.sleep(30)
    except KeyboardInterrupt:
        print("interrupted", flush=True)
print("summary", flush=True)
"""


def _make_under_terminal(tmp_path: Path, module: str, name: str) -> tuple[int, str]:
    """Run ``make run`` (whose recipe runs the snippet) on a pty, press Ctrl-C once it is ready."""
    (tmp_path / "Makefile").write_text(f'run:\n\t{sys.executable} -c "$$SNIPPET"\n')
    pid, terminal = pty.fork()
    if pid == 0:  # the child: make, with the terminal as its controlling terminal
        # As from a user's shell: Ctrl-C not ignored. (A test run started in the background by a
        # non-interactive shell, `cmd &`, inherits SIGINT ignored, and so would make and Python.)
        signal.signal(signal.SIGINT, signal.SIG_DFL)
        os.environ["SNIPPET"] = SNIPPET.format(module=module, name=name)
        os.execvp("make", ["make", "-s", "-C", str(tmp_path), "run"])
    output = b""
    deadline = time.monotonic() + 60
    while b"ready" not in output and time.monotonic() < deadline:
        if select.select([terminal], [], [], 0.5)[0]:
            output += os.read(terminal, 1024)
    os.write(terminal, b"\x03")
    while time.monotonic() < deadline:
        if select.select([terminal], [], [], 0.5)[0]:
            try:
                chunk = os.read(terminal, 1024)
            except OSError:  # the terminal closed: everything on it exited
                break
            if not chunk:
                break
            output += chunk
    _, status = os.waitpid(pid, 0)
    os.close(terminal)
    return os.waitstatus_to_exitcode(status), output.decode(errors="replace")


def test_ctrl_c_under_make_reaches_the_command_alone_and_make_exits_0(tmp_path: Path) -> None:
    code, output = _make_under_terminal(tmp_path, "pricewave.stack.process", "foreground_terminal")
    assert "interrupted" in output and "summary" in output, output
    assert "Interrupt" not in output.replace("interrupted", ""), output  # make's "*** [run] Interrupt"
    assert code == 0, output


def test_without_it_make_is_interrupted_too(tmp_path: Path) -> None:
    """The control: the same recipe without the context manager makes make fail (what users saw)."""
    code, output = _make_under_terminal(tmp_path, "contextlib", "nullcontext")
    assert "summary" in output, output
    assert code != 0, output
