"""Flowdeck's worker and scheduler: machine steps from SAQ, timers, deadlines, the reconciler.

Import from here::

    from flowdeck_worker import InstanceRunner, Scheduler, build_worker, run_instance
"""

from __future__ import annotations

from flowdeck_worker.jobs import WorkerContext, run_instance
from flowdeck_worker.runner import InstanceRunner, TenantMismatchError
from flowdeck_worker.scheduler import Scheduler, run_scheduler
from flowdeck_worker.services import Services, open_services
from flowdeck_worker.worker import build_worker, run_worker

__all__ = [
    "InstanceRunner",
    "Scheduler",
    "Services",
    "TenantMismatchError",
    "WorkerContext",
    "build_worker",
    "open_services",
    "run_instance",
    "run_scheduler",
    "run_worker",
]
