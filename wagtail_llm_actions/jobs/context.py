"""The state one job worker shares between its threads (:class:`_RunContext`)."""

from __future__ import annotations

import contextlib
import threading
from collections import deque
from dataclasses import dataclass, field

from ..models import LLMAction, LLMJob
from .planning import SKIP_ACTION_DELETED, SKIP_ACTION_DISABLED
from .slots import _Slots


@dataclass
class _RunContext:
    job: LLMJob
    #: None for a job run by its pipeline alone (every step has its own prompt).
    action: LLMAction | None
    trigger: str
    token: str
    lease: float
    limit: int
    max_attempts: int
    claims: dict[int, str] = field(default_factory=dict)  # item pk -> claim token
    lock: threading.Lock = field(default_factory=threading.Lock)
    counter: int = 0
    action_version: tuple | None = None
    #: The provider slots this worker holds (None: no limit, for direct calls in tests).
    slots: _Slots | None = None
    #: Items per claim query; claimed items wait in ``pending`` for a thread.
    batch: int = 1
    pending: deque = field(default_factory=deque)
    claim_lock: threading.Lock = field(default_factory=threading.Lock)
    stop: threading.Event = field(default_factory=threading.Event)
    #: Idle threads wait here; a page finishing in this process wakes them.
    wake: threading.Condition = field(default_factory=threading.Condition)
    #: Until then (monotonic) a claim found nothing: idle threads do not ask again.
    idle_until: float = 0.0
    #: The last claim found nothing while items were still queued or running elsewhere.
    nothing_to_claim: bool = False
    #: This worker holds the job's coordinator lease.
    coordinating: bool = False
    #: The coordinator's next look at the broker (monotonic), its current wait, and the
    #: job's workers when it last queued a task.
    pump_at: float = 0.0
    pump_backoff: float = 1.0
    pumped_members: int | None = None
    #: A budget refused a call: the job is paused and this worker stops (see .pauses).
    paused: bool = False

    def current_action(self) -> tuple[LLMAction | None, str]:
        """The action as it is now (one query; re-read in full only when it changed).

        Returns ``(None, reason)`` when it was disabled or deleted since the job started.
        """
        row = (
            LLMAction.objects.filter(pk=self.action.pk)
            .values_list("enabled", "updated_at", "prompt__updated_at")
            .first()
        )
        if row is None:
            return None, SKIP_ACTION_DELETED
        if not row[0]:
            return None, SKIP_ACTION_DISABLED
        with self.lock:
            if self.action_version is None:
                self.action_version = row
            elif row != self.action_version:
                fresh = LLMAction.objects.select_related("prompt").filter(pk=self.action.pk)
                fresh = fresh.first()
                if fresh is None:
                    return None, SKIP_ACTION_DELETED
                self.action, self.action_version = fresh, row
            return self.action, ""

    def next_claim(self) -> str:
        with self.lock:
            self.counter += 1
            return f"{self.token}:{self.counter}"

    def call_slot(self) -> contextlib.AbstractContextManager:
        """Held around a model call: one of the worker's provider slots."""
        return self.slots.hold(self.stop) if self.slots is not None else contextlib.nullcontext()

    def notify(self) -> None:
        with self.wake:
            self.wake.notify_all()

    def idle(self, seconds: float) -> None:
        """Wait until a page of this process finishes, the worker stops, or ``seconds``."""
        with self.wake:
            if not self.stop.is_set():
                self.wake.wait(seconds)
