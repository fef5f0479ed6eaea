"""Smoke tests of bench/: each benchmark runs once at a tiny size; figures are never asserted."""

from __future__ import annotations

import subprocess

# PyFlink's embedded Python workers print gRPC shutdown tracebacks on every run: not the failure.
_NOISE = ("grpc", "Multiplexer hanging up", "_MultiThreadedRendezvous", "debug_error_string", "status = ")


def failure_report(result: subprocess.CompletedProcess[str]) -> str:
    """Exit status, the end of stdout and the stderr lines that are not gRPC shutdown noise."""
    errors = [line for line in result.stderr.splitlines() if not any(noise in line for noise in _NOISE)]
    return f"exit status {result.returncode}\n--- stdout\n{result.stdout[-2000:]}\n--- stderr\n" + "\n".join(
        errors[-40:]
    )
