"""What the ledger holds, whatever store keeps it: job records, request claims and leases, and
the rules both stores apply when a record changes."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from pydantic import BaseModel

from aipg_mcp.grid.jobs import JobKind, JobProgress, JobResult, JobState

if TYPE_CHECKING:
    from aipg_mcp.grid.requests import GridRequest

DEAD_STATES = (JobState.FAULTED, JobState.CANCELLED, JobState.EXPIRED, JobState.INTERRUPTED)
"""States of a job that is no answer to a repeated call: it is submitted again instead."""

COLUMNS = (
    "job_id, kind, api, grid, state, params, fingerprint, submitted_at, updated_at, "
    "progress, result, files, error, note, owner"
)
"""The job columns in the order every query names them; :func:`to_row` and :func:`from_row`
follow it."""


class LedgerError(RuntimeError):
    """The ledger cannot be used; the message names where it is and what to do."""


class JobRecord(BaseModel):
    """One submitted job as the ledger remembers it."""

    job_id: str
    kind: JobKind
    api: str
    grid: str
    state: JobState
    params: dict[str, Any]
    fingerprint: str
    submitted_at: float
    updated_at: float
    progress: JobProgress | None = None
    result: JobResult | None = None
    files: dict[str, str] = {}
    error: str | None = None
    note: str | None = None
    owner: str = ""


@dataclass(frozen=True)
class Claim:
    """The claim on submitting one request (by fingerprint), as the ledger holds it.

    ``won`` says the caller that asked now holds it and may submit. Otherwise another holder is
    submitting (``expires_at`` still ahead, renewed while it works) or its claim lapsed with no
    job recorded: it died or lost the grid's answer, so the request may have been queued and
    billed, and must not be sent again blindly.
    """

    fingerprint: str
    holder: str
    claimed_at: float
    expires_at: float
    won: bool
    checked_at: float
    """When the ledger answered, by the clock the expiry is compared with."""

    @property
    def lapsed(self) -> bool:
        return not self.won and self.expires_at <= self.checked_at


@dataclass(frozen=True)
class Lease:
    """A named lease: held by ``owner`` until ``expires_at`` unless renewed before."""

    name: str
    owner: str
    expires_at: float

    def held_by(self, owner: str, now: float) -> bool:
        return self.owner == owner and self.expires_at > now


@dataclass(frozen=True)
class StreamEvent:
    """One kept event of an HTTP session's SSE stream: its number (which grows with every event
    the ledger keeps) and the JSON-RPC message as sent, or None for a priming event."""

    number: int
    data: str | None


def fingerprint(kind: JobKind, grid: str, params: Mapping[str, Any], identity: str) -> str:
    """A stable hash of a request, so an identical repeated call can be recognised.

    ``identity`` tells API keys apart without storing them: pass a hash of the key, never the key.
    """
    canonical = dumps(
        {"kind": str(kind), "grid": grid.rstrip("/"), "params": params, "identity": identity}
    )
    return hashlib.sha256(canonical.encode("utf-8")).hexdigest()


def stored_params(request: GridRequest) -> dict[str, Any]:
    """The request as the ledger keeps it: source images replaced by a digest, never inlined."""
    params = request.described()
    for key in ("source_image", "source_mask", "image"):
        value = params.get(key)
        if isinstance(value, str) and not value.startswith(("http://", "https://")):
            digest = hashlib.sha256(value.encode()).hexdigest()[:16]
            params[key] = f"<image sha256:{digest}, {len(value)} base64 chars>"
    return params


def merge(
    record: JobRecord,
    *,
    state: JobState | None,
    progress: JobProgress | None,
    result: JobResult | None,
    files: Mapping[str, str] | None,
    error: str | None,
    note: str | None,
) -> dict[str, Any]:
    """The field changes an update may make to ``record``, under the ledger's rules.

    ``files`` is merged into the files already saved. A finished result is never lost: a DONE
    record never moves back to a running state (nor takes a running progress), and a stored
    result is never replaced by one with fewer outputs.
    """
    done = record.state is JobState.DONE
    changes: dict[str, Any] = {}
    if state is not None and not (done and not state.final):
        changes["state"] = state
    if progress is not None and not (done and not progress.state.final):
        changes["progress"] = progress
    if result is not None and (
        record.result is None or _output_count(result) >= _output_count(record.result)
    ):
        changes["result"] = result
    if files:
        changes["files"] = {**record.files, **files}
    if error is not None:
        changes["error"] = error
    if note is not None:
        changes["note"] = note
    return changes


def _output_count(result: JobResult) -> int:
    return len(result.texts) + len(result.images) + len(result.captions) + len(result.media)


def to_row(record: JobRecord) -> tuple[Any, ...]:
    """The record as column values, in the order of :data:`COLUMNS`."""
    return (
        record.job_id,
        str(record.kind),
        record.api,
        record.grid,
        str(record.state),
        dumps(record.params),
        record.fingerprint,
        record.submitted_at,
        record.updated_at,
        model_json(record.progress),
        model_json(record.result),
        dumps(record.files),
        record.error,
        record.note,
        record.owner,
    )


def changed_row(record: JobRecord) -> tuple[Any, ...]:
    """The values an update writes, in the order of the stores' UPDATE statements."""
    return (
        str(record.state),
        model_json(record.progress),
        model_json(record.result),
        dumps(record.files),
        record.error,
        record.note,
        record.updated_at,
        record.job_id,
    )


def from_row(row: tuple[Any, ...] | Any) -> JobRecord:
    """A record from column values in the order of :data:`COLUMNS`."""
    (job_id, kind, api, grid, state, params, fp, submitted, updated) = row[:9]
    progress, result, files, error, note, owner = row[9:15]
    return JobRecord(
        job_id=job_id,
        kind=JobKind(kind),
        api=api,
        grid=grid,
        state=JobState(state),
        params=json.loads(params),
        fingerprint=fp,
        submitted_at=submitted,
        updated_at=updated,
        progress=None if progress is None else JobProgress.model_validate_json(progress),
        result=None if result is None else JobResult.model_validate_json(result),
        files=json.loads(files) if files else {},
        error=error,
        note=note,
        owner=owner,
    )


def model_json(model: BaseModel | None) -> str | None:
    return None if model is None else model.model_dump_json()


def dumps(value: Any) -> str:
    """Canonical JSON: sorted keys, no spaces, so equal values give equal text."""
    return json.dumps(
        value, sort_keys=True, separators=(",", ":"), ensure_ascii=False, default=_jsonable
    )


def _jsonable(value: Any) -> Any:
    """JSON for the values requests may hold beyond plain JSON types."""
    if isinstance(value, BaseModel):
        return value.model_dump(mode="json")
    if isinstance(value, set | frozenset):
        return sorted(value, key=repr)
    return str(value)
