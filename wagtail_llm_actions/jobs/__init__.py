"""The bulk job engine: run one action over many pages, resumably, on django-q2 workers.

Where things are:

* :mod:`.planning`: selection, skip reasons, the confirmation screen's estimate, creating
  and queueing a job (no job runs there);
* :mod:`.worker`: :func:`run_job`, one job worker in named phases (join, coordinate, run
  threads, heartbeat, leave), and the coordinator's pump;
* :mod:`.claims`: how a worker claims pages (and gives back those it did not start);
* :mod:`.items`: one claimed page run to its outcome (an action's run, a pipeline's);
* :mod:`.images`: jobs over images (items with a target instead of a page);
* :mod:`.snippets`: jobs over snippets (items with a target, run as pages are);
* :mod:`.leases`: item and coordinator leases, on the database's clock;
* :mod:`.slots`: provider slots, the fair share of each job and worker;
* :mod:`.control`: cancel, retry, apply stored answers, recover, progress;
* :mod:`.pauses`: a job a budget paused, and its resumption; :mod:`.budget_limits`: a job
  limited to the pages that fit its budgets;
* the django-q2 tasks are :mod:`wagtail_llm_actions.tasks` (their dotted names are stored
  in the broker and the schedule, so they stay there).

Every name below is importable from this package.

Nothing here knows about HTTP; the bulk action, the views and ``run_llm_action`` call these
functions, and every page run goes through :meth:`LLMService.run`.

::

    plan = plan_job(action, user, page_ids, include_descendants=True)   # preview, no writes
    job = create_job(action, user, page_ids, include_descendants=True)  # job + one item a page
    enqueue_job(job)                     # a worker task on django-q2 (after commit)
    run_job(job.pk)                      # ...or run it here, in the foreground

Design
======

**Items.** A job has one ``LLMJobItem`` per selected page (and descendant). Pages that cannot
run are created *skipped* with a reason (wrong type, no permission, locked); the rest are
*queued*. Whether the source is empty, or unchanged (:mod:`.unchanged`: an answer of this
action from the same inputs is in the page's newest revision, or a person discarded it), is
decided when the item runs, just before any model call, so it is true at that moment.

**Triggers.** An action's trigger (:mod:`wagtail_llm_actions.triggers`: on publish, on a
changed source, on a schedule) creates an ordinary job of kind ``trigger``, whose item
waits ``trigger_delay`` seconds (``not_before``); the engine runs it as any other.

**Any worker, any host.** :func:`enqueue_job` queues one django-q2 task,
``tasks.run_job(job_id)``; no set of runners is fixed. Whichever worker process takes a
job's task works on it (:func:`run_job`), beside any others, on any host that shares the
database and the broker. Each worker registers in ``LLMProviderSlots`` (its job, host and
slots) and renews that row, its items' leases and (see below) the coordinator lease at every
heartbeat (``HEARTBEAT``). One of the job's workers holds the *coordinator lease*
(``LLMJob.runner_token``/``runner_lease_expires_at``); any other worker of the job takes
the role over once that lease expires. The coordinator stays until every item is final
(waiting for the items of dead workers to be reclaimed), and keeps one task for the job in
the broker while the job could use another worker and nothing else waits there
(:func:`_pump`): the next free worker of any host, one that has just joined included, takes
it. Other workers leave when there is nothing to claim and the coordinator is seen renewing
its lease, or when the job's share of slots is covered without them. A host runs at most
``JOB_WORKERS_PER_HOST`` job workers (default: its django-q2 workers minus one, so one
stays free for editor runs); a task that finds its host full is passed on to the broker
again (at most ``tasks.MAX_HOPS`` times). Any worker that finds every item final completes
the job; any worker notices a cancellation. After a time budget below the django-q2
timeout a worker leaves and queues a successor task, so no task runs for hours. A worker
called inside a transaction (tests, ``sync`` mode) uses the calling thread only and queues
nothing.

**A slot is a call in flight.** ``CONCURRENCY[provider]`` (``{"*": 4, "openai": 8}``, keyed
by the model's provider prefix) bounds the model calls in flight across all workers and jobs
of that provider. At each heartbeat a worker re-reserves its fair share (:func:`reserve`,
one transaction under an advisory lock on PostgreSQL; SQLite serialises writes anyway):
:func:`fair_shares` splits the limit equally between the jobs that ask (a job never gets
more than its own limit; what one cannot use goes to the others), then each job's share
equally between its workers. A worker above its share gives slots back as its calls finish
(its row never drops below the calls it has in flight), and one below it takes what is free,
so the sum of live reservations never exceeds the limit, a second job gets its share within
a heartbeat or two, a joining host gets its worker's share, and a dead host's slots return
to the others when its rows expire. The worker lends its slots to its threads in memory
(:class:`_Slots`), one per model call, around the call only (``LLMService.run(call_slot=...)``).
Claiming, reading the page, storing the answer, saving the draft and logging hold no slot;
a worker runs a thread per slot and ``EXTRA_THREADS`` more on PostgreSQL (its thread count
follows its share), so its database connections are about one per slot plus three. On
SQLite the threads' write transactions share commits (:class:`db.WriteBatcher`): writes are
serialised there anyway and every commit syncs the journal to disk.

**Leases on the database's clock.** Every lease (items, the coordinator's, slots) and every
backoff (``not_before``) is set as the database's ``now()`` plus a duration and compared
with the database's ``now()``, so hosts whose clocks differ agree on when a lease expired.

**Claim.** Items are claimed several at a time (:func:`claim_items`) in one write
transaction: ``status`` queued (and ``not_before`` passed) *or* running with an expired
lease → running, with a claim token in ``claimed_by``, a lease and ``attempts + 1`` (on
PostgreSQL rows another claim is taking are skipped). Claimed items wait in the worker's
memory for a free thread (a claim takes as many as the worker has slots); a worker that
stops gives back those it did not start. Idle threads wait for a page of their process to
finish (or ``IDLE_POLL``), not on a fixed poll.

**Idempotency.** ``LLMService.run(..., on_success=...)`` marks the item *succeeded* inside
the transaction that saves the draft revision and the interaction, and only if the item is
still running under this claim token; otherwise it raises and the revision is rolled back.
So a page gets at most one new draft revision per job, however often a task is retried or
redelivered or a lease expires while a slow call is still running.

**Retries.** Errors the provider layer marks retryable (rate limits, server errors,
timeouts, connection errors) put the item back in the queue with ``not_before`` set by
exponential backoff (``RETRY_BACKOFF * 2**(attempt-1)``, capped, with jitter) until
``MAX_ATTEMPTS`` attempts; other errors fail the item at once. The per-call timeout is the
action's. An item whose claims keep being lost to dying workers also fails after
``MAX_ATTEMPTS`` + 1 claims, so nothing retries forever.

**Budgets.** A call a budget refuses was never sent: its page goes back to the queue (the
attempt not counted) and the job *pauses* (:mod:`.pauses`) instead of failing its remaining
pages; a budget saved, the periodic check (a new period) or the job page's Resume lifts the
pause, and the same items run on, each at most once.

**Crash safety.** If a worker or a whole host is killed (SIGKILL), its transactions are
rolled back: its items stay *running* with leases that expire, its slots' rows expire
(``LEASE_SECONDS``), and if it coordinated the job, its coordinator lease expires too. The
job's other workers reclaim those items, take the coordinator role over and use the freed
slots, on either broker, without a restart: a host's death costs only its calls in flight
(made again) and the time until their leases expire. If no worker of the job is left, a
django-q2 schedule (``tasks.keep_jobs_running``, every minute) queues a task for each job
whose coordinator lease expired, and every worker process that starts (``post_spawn``,
:func:`recover_jobs`) queues one for each unfinished job. This does not depend on the
broker keeping the lost task (the Redis broker drops a task a killed worker had taken; the
ORM broker redelivers it after ``Q_CLUSTER["retry"]`` seconds, and that duplicate just
joins or leaves). "Retry failed" and the ``run_llm_action`` command also queue a task.
"""

from __future__ import annotations

from ..unchanged import working_copies  # the pages as a run reads them (a job's API)
from .claims import (
    IDLE_POLL,
    LOST,
    claim_item,
    claim_items,
)
from .context import (
    _RunContext,
)
from .control import (
    FINAL_STATUSES,
    Progress,
    apply_stored_answers,
    cancel_job,
    job_progress,
    recover_jobs,
    retry_failed,
    stored_answer_items,
    waiting_for_worker,
)
from .images import ImagePlan, create_image_job, plan_image_job
from .items import (
    LeaseLost,
    process_item,
)
from .leases import (
    MAX_BACKOFF,
    backoff_seconds,
    db_in,
    host_id,
    lease_seconds,
    new_token,
)
from .options import concurrency_for, max_attempts, provider_prefix
from .planning import (
    CHUNK_SIZE,
    ENGINE_KINDS,
    EXAMPLES_PER_REASON,
    HELPER_TASK,
    PREVIEW_SAMPLE,
    ROOTS_PER_QUERY,
    RUNNER_TASK,
    SKIP_ACTION_DELETED,
    SKIP_ACTION_DISABLED,
    SKIP_DELETED,
    SKIP_LOCKED,
    SKIP_MODERATION,
    SKIP_NO_PERMISSION,
    SKIP_NOT_AVAILABLE,
    SKIP_PIPELINE_DELETED,
    SKIP_PIPELINE_DISABLED,
    SKIP_REASONS,
    SKIP_SOURCE_EMPTY,
    SKIP_UNCHANGED,
    SKIP_WRONG_TYPE,
    ContentCheck,
    Plan,
    annotate_reasons,
    check_content,
    create_job,
    create_pipeline_job,
    enqueue_job,
    page_ids_for_action,
    plan_job,
    plan_pipeline_job,
    selection_parts,
    skip_reason_label,
)
from .slots import (
    SLOT_POLL,
    Grant,
    NoSlot,
    fair_shares,
    host_worker_cap,
    release_slots,
    reserve,
    reserve_grant,
    reserve_slots,
)
from .snippets import SnippetPlan, create_snippet_job, plan_snippet_job
from .worker import (
    EXTRA_THREADS,
    HEARTBEAT,
    PUMP_INTERVAL,
    PUMP_MAX,
    run_job,
    step,
)

__all__ = [
    "CHUNK_SIZE",
    "ContentCheck",
    "ENGINE_KINDS",
    "EXAMPLES_PER_REASON",
    "EXTRA_THREADS",
    "FINAL_STATUSES",
    "Grant",
    "HEARTBEAT",
    "HELPER_TASK",
    "IDLE_POLL",
    "LOST",
    "LeaseLost",
    "MAX_BACKOFF",
    "NoSlot",
    "PREVIEW_SAMPLE",
    "PUMP_INTERVAL",
    "PUMP_MAX",
    "Plan",
    "Progress",
    "ROOTS_PER_QUERY",
    "RUNNER_TASK",
    "SKIP_ACTION_DELETED",
    "SKIP_ACTION_DISABLED",
    "SKIP_DELETED",
    "SKIP_LOCKED",
    "SKIP_MODERATION",
    "SKIP_NOT_AVAILABLE",
    "SKIP_NO_PERMISSION",
    "SKIP_PIPELINE_DELETED",
    "SKIP_PIPELINE_DISABLED",
    "SKIP_REASONS",
    "SKIP_SOURCE_EMPTY",
    "SKIP_UNCHANGED",
    "SKIP_WRONG_TYPE",
    "SLOT_POLL",
    "_RunContext",
    "annotate_reasons",
    "apply_stored_answers",
    "backoff_seconds",
    "cancel_job",
    "check_content",
    "claim_item",
    "claim_items",
    "concurrency_for",
    "create_job",
    "create_image_job",
    "plan_image_job",
    "plan_snippet_job",
    "SnippetPlan",
    "create_snippet_job",
    "ImagePlan",
    "create_pipeline_job",
    "db_in",
    "enqueue_job",
    "fair_shares",
    "host_id",
    "host_worker_cap",
    "job_progress",
    "lease_seconds",
    "max_attempts",
    "new_token",
    "page_ids_for_action",
    "plan_job",
    "plan_pipeline_job",
    "process_item",
    "provider_prefix",
    "recover_jobs",
    "release_slots",
    "reserve",
    "reserve_grant",
    "reserve_slots",
    "retry_failed",
    "run_job",
    "selection_parts",
    "skip_reason_label",
    "step",
    "stored_answer_items",
    "waiting_for_worker",
    "working_copies",
]
