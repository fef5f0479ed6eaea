"""What every local service offers to ``pricewave stack``."""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass
from pathlib import Path

from pricewave.config import Settings
from pricewave.stack.process import running_pid, stop_process


@dataclass(frozen=True)
class ServiceStatus:
    """One row of ``pricewave stack status``."""

    name: str
    state: str  # "running", "stopped", "degraded", or "external" (answers, not started by us)
    pids: tuple[int, ...]
    address: str
    log: Path


class Service(ABC):
    """A local service started in the background and tracked by pid files.

    Subclasses define the processes (``process_names``) and how to install, start and
    health-check them. ``start`` is idempotent: running processes are left alone.
    """

    name: str = ""
    marker: str = ""  # a string in the command line of every process, against pid reuse

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.home = settings.path(self.name)

    def pid_file(self, process: str) -> Path:
        return self.settings.path("run", f"{process}.pid")

    def log_file(self, process: str) -> Path:
        return self.settings.path("logs", f"{process}.log")

    @abstractmethod
    def process_names(self) -> list[str]:
        """Names of the processes this service runs (one pid file each)."""

    @property
    @abstractmethod
    def address(self) -> str:
        """Where clients reach the service."""

    @abstractmethod
    def install(self) -> None:
        """Fetch what is missing (jars, packages), saying what it does."""

    @abstractmethod
    def start_process(self, process: str) -> None:
        """Start one process in the background."""

    @abstractmethod
    def healthy(self) -> bool:
        """True when the service answers its clients."""

    @abstractmethod
    def wait_ready(self) -> None:
        """Block until healthy, or raise StackError naming the log."""

    def dead_log(self) -> Path | None:
        """The log of the first of our processes that is not running, or None."""
        for process in self.process_names():
            if running_pid(self.pid_file(process), self.marker) is None:
                return self.log_file(process)
        return None

    def running_pids(self) -> dict[str, int]:
        pids = {}
        for process in self.process_names():
            pid = running_pid(self.pid_file(process), self.marker)
            if pid is not None:
                pids[process] = pid
        return pids

    def start(self) -> list[str]:
        """Start the processes not yet running; returns the names started now."""
        running = self.running_pids()
        started = []
        for process in self.process_names():
            if process not in running:
                self.start_process(process)
                started.append(process)
        return started

    def stop(self) -> list[str]:
        """Stop the processes this stack started (by pid); returns the names stopped."""
        stopped = []
        for process in reversed(self.process_names()):
            if stop_process(self.pid_file(process), self.marker):
                stopped.append(process)
        return stopped

    def status(self) -> ServiceStatus:
        running = self.running_pids()
        wanted = self.process_names()
        if len(running) == len(wanted):
            state = "running" if self.healthy() else "starting"
        elif running:
            state = "degraded"
        else:
            state = "external" if self.healthy() else "stopped"
        return ServiceStatus(self.name, state, tuple(running.values()), self.address, self.log_file(wanted[0]))
