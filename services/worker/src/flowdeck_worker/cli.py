"""``flowdeck worker`` and ``flowdeck scheduler``: configured by the environment (``FLOWDECK_*``)."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import TYPE_CHECKING

import uvloop

from flowdeck_runtime.settings import get_settings

if TYPE_CHECKING:
    import argparse


def _logging(level: str) -> None:
    logging.basicConfig(level=level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s")


@dataclass(frozen=True)
class _WorkerCommand:
    help: str = "Run a worker: machine steps from the SAQ queue (PostgreSQL + Redis)"

    def configure(self, parser: argparse.ArgumentParser) -> None:
        parser.add_argument("--log-level", default="info", choices=["debug", "info", "warning", "error"])

    def run(self, args: argparse.Namespace) -> int:
        from flowdeck_worker.worker import run_worker

        _logging(args.log_level)
        uvloop.run(run_worker(get_settings()))  # uvloop: the worker is CPU-bound on its event loop
        return 0


@dataclass(frozen=True)
class _SchedulerCommand:
    help: str = "Run a scheduler: timers, deadlines and escalations, and the reconciler"

    def configure(self, parser: argparse.ArgumentParser) -> None:
        parser.add_argument("--log-level", default="info", choices=["debug", "info", "warning", "error"])

    def run(self, args: argparse.Namespace) -> int:
        from flowdeck_worker.scheduler import run_scheduler

        _logging(args.log_level)
        uvloop.run(run_scheduler(get_settings()))
        return 0


WORKER = _WorkerCommand()
SCHEDULER = _SchedulerCommand()

__all__ = ["SCHEDULER", "WORKER"]
