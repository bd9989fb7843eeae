"""External job schemas."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any
from uuid import UUID

import msgspec

MAX_FETCH = 100
MAX_WAIT_SECONDS = 30.0
MAX_LEASE_SECONDS = 3600


class JobFetch(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    """Lease up to ``max_jobs`` waiting jobs of ``job_type`` for ``lease_seconds``; with
    ``wait_seconds``, wait that long for one to appear when none is waiting (a long poll)."""

    job_type: Annotated[str, msgspec.Meta(min_length=1, max_length=255)]
    max_jobs: Annotated[int, msgspec.Meta(ge=1, le=MAX_FETCH)] = 10
    wait_seconds: Annotated[float, msgspec.Meta(ge=0, le=MAX_WAIT_SECONDS)] = 0.0
    lease_seconds: Annotated[int, msgspec.Meta(ge=1, le=MAX_LEASE_SECONDS)] = 300


class JobRead(msgspec.Struct, kw_only=True):
    """A job leased to the caller until ``lease_expires_at``: complete or fail it before then."""

    id: UUID
    instance_id: UUID
    step_name: str
    job_type: str
    input: dict[str, Any]
    """The instance's context data when the job was leased."""
    lease_expires_at: datetime
    attempt: int
    """How many times the job has been leased, this lease included."""


class JobComplete(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    """The job's result: merged into the instance's context like a callback's payload."""

    output: dict[str, Any] = msgspec.field(default_factory=dict)


class JobFail(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    """Give up a leased job. With ``retry`` (and attempts left) the job is offered again after
    ``retry_in_seconds``; otherwise its step fails, and with it the instance."""

    error: Annotated[str, msgspec.Meta(min_length=1, max_length=4000)]
    retry: bool = True
    retry_in_seconds: Annotated[int, msgspec.Meta(ge=0, le=MAX_LEASE_SECONDS)] = 0


class JobOutcome(msgspec.Struct, kw_only=True):
    """What became of the job: ``completed``, ``released`` (offered again) or ``failed``."""

    id: UUID
    instance_id: UUID
    status: str
    instance_status: str
    attempt: int
