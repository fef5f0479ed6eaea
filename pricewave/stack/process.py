"""Background processes the local stack starts, tracked by pid file so `down` stops only those.

Example:
    >>> from pathlib import Path
    >>> read_pid(Path("/nonexistent/pid")) is None
    True
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from pathlib import Path

from pricewave.errors import StackError


def read_pid(pid_file: Path) -> int | None:
    """The pid recorded in ``pid_file``, or None when there is none."""
    try:
        return int(pid_file.read_text().strip())
    except (FileNotFoundError, ValueError):
        return None


def is_alive(pid: int, marker: str) -> bool:
    """True when ``pid`` runs and its command line contains ``marker``.

    The marker guards against pid reuse: a recycled pid belongs to another program.
    """
    try:
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
        stat = Path(f"/proc/{pid}/stat").read_text()
    except (FileNotFoundError, ProcessLookupError, PermissionError):
        return False
    # A zombie (state Z) has exited; its parent just has not reaped it yet.
    state = stat.rsplit(")", 1)[-1].split()[0]
    # An empty command line: the process is inside execve (Flink's scripts exec their JVM), so the
    # start-up wait must not take it for dead.
    return state != "Z" and (marker in cmdline or not cmdline.strip())


def running_pid(pid_file: Path, marker: str) -> int | None:
    """The pid from ``pid_file`` if that process still runs, else None."""
    pid = read_pid(pid_file)
    return pid if pid is not None and is_alive(pid, marker) else None


def start_detached(
    command: Sequence[str],
    *,
    pid_file: Path,
    log_file: Path,
    env: Mapping[str, str] | None = None,
    cwd: Path | None = None,
) -> int:
    """Start ``command`` in its own session with output to ``log_file``; record its pid."""
    log_file.parent.mkdir(parents=True, exist_ok=True)
    pid_file.parent.mkdir(parents=True, exist_ok=True)
    with log_file.open("ab") as log:
        process = subprocess.Popen(
            list(command),
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            env=dict(env) if env is not None else None,
            cwd=cwd,
            start_new_session=True,
        )
    pid_file.write_text(f"{process.pid}\n")
    return process.pid


def stop_process(pid_file: Path, marker: str, *, timeout_s: float = 30.0) -> bool:
    """Stop the process recorded in ``pid_file`` (SIGTERM, then SIGKILL); True if one was running."""
    pid = running_pid(pid_file, marker)
    if pid is None:
        pid_file.unlink(missing_ok=True)
        return False
    os.killpg(pid, signal.SIGTERM) if _is_group_leader(pid) else os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline and is_alive(pid, marker):
        time.sleep(0.2)
    if is_alive(pid, marker):
        os.kill(pid, signal.SIGKILL)
        while is_alive(pid, marker):
            time.sleep(0.1)
    _reap(pid)
    pid_file.unlink(missing_ok=True)
    return True


def _is_group_leader(pid: int) -> bool:
    try:
        return os.getpgid(pid) == pid
    except ProcessLookupError:
        return False


def _reap(pid: int) -> None:
    with contextlib.suppress(ChildProcessError):
        os.waitpid(pid, os.WNOHANG)


def port_open(host: str, port: int, timeout_s: float = 0.5) -> bool:
    """True when something accepts TCP connections on ``host:port``."""
    try:
        with socket.create_connection((host, port), timeout=timeout_s):
            return True
    except OSError:
        return False


def wait_until(
    check: Callable[[], bool],
    *,
    timeout_s: float,
    what: str,
    log_file: Path,
    dead_log: Callable[[], Path | None] | None = None,
) -> None:
    """Poll ``check`` until it is true; raise a StackError naming the log otherwise.

    ``dead_log`` returns the log of a process that has exited (None while all run), so a
    crash is reported at once instead of after the timeout.
    """
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if check():
            return
        crashed = dead_log() if dead_log is not None else None
        if crashed is not None:
            raise StackError(f"{what} exited during start-up; see {crashed}\n{tail(crashed)}")
        time.sleep(0.5)
    raise StackError(f"{what} did not answer within {timeout_s:.0f} s; see {log_file}\n{tail(log_file)}")


# Variables that describe this process, not the environment:
# * Feast, once imported, points the PROMETHEUS_* pair at a temporary folder that its importing
#   process deletes on exit; a child that inherits them fails on its own ``import feast`` then.
# * PyFlink, after it ran a MiniCluster job with Python workers in this process (loopback mode),
#   leaves the worker's PYFLINK_GATEWAY_DISABLED here; a child PyFlink driver that inherits it
#   refuses to start its gateway ("launching the PythonGatewayServer during Python UDF execution").
_PROCESS_LOCAL_VARIABLES = ("PROMETHEUS_MULTIPROC_DIR", "PROMETHEUS_MULTIPROCESS_DIR", "PYFLINK_GATEWAY_DISABLED")


def child_environment(overrides: Mapping[str, str] | None = None) -> dict[str, str]:
    """The environment for a process we start: ours, less what belongs to this process alone.

    Args:
        overrides: Variables to set on top.

    Returns:
        A fresh dict, safe to pass as ``env=`` to :mod:`subprocess`.

    Example:
        >>> import os
        >>> os.environ["PYFLINK_GATEWAY_DISABLED"] = "true"
        >>> "PYFLINK_GATEWAY_DISABLED" in child_environment({"A": "1"})
        False
        >>> del os.environ["PYFLINK_GATEWAY_DISABLED"]
    """
    env = {k: v for k, v in os.environ.items() if k not in _PROCESS_LOCAL_VARIABLES}
    env.update(overrides or {})
    return env


def tail(path: Path, lines: int = 15) -> str:
    """The last lines of a log file, indented, for error messages."""
    try:
        content = path.read_text(errors="replace").splitlines()[-lines:]
    except FileNotFoundError:
        return "  (no log yet)"
    from pricewave.config import mask_secrets  # a log may echo a command line or config with secrets

    return "\n".join(f"  | {mask_secrets(line)}" for line in content)


@contextlib.contextmanager
def foreground_terminal() -> Iterator[None]:
    """While the block runs, this process alone is the terminal's foreground: Ctrl-C reaches only it.

    Ctrl-C sends SIGINT to the terminal's whole foreground process group: under ``make run`` that
    is make as well, which then reports an interrupted recipe and exits non-zero however cleanly
    this process stops. In its own process group, in the foreground, this process gets the signal
    alone, finishes its work (a summary, what is still running) and exits with its own code; the
    group that had the terminal gets it back afterwards. Without a controlling terminal (CI, a
    pipe) nothing changes.
    """
    try:
        terminal = os.open("/dev/tty", os.O_RDWR)
    except OSError:
        yield
        return
    previous = None
    try:
        if os.tcgetpgrp(terminal) == os.getpgrp() and os.getpid() != os.getsid(0):
            previous = os.getpgrp()
            os.setpgid(0, 0)
            _set_foreground(terminal, os.getpgrp())
    except OSError:
        previous = None
    try:
        yield
    finally:
        if previous is not None:
            with contextlib.suppress(OSError):
                _set_foreground(terminal, previous)
                os.setpgid(0, previous)
        os.close(terminal)


def _set_foreground(terminal: int, process_group: int) -> None:
    # A process outside the foreground group that sets it is stopped by SIGTTOU unless it ignores it.
    handler = signal.signal(signal.SIGTTOU, signal.SIG_IGN)
    try:
        os.tcsetpgrp(terminal, process_group)
    finally:
        signal.signal(signal.SIGTTOU, handler)
