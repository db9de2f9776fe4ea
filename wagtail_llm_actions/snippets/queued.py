"""An action run from a snippet's edit view: queued as the editor's runs are (no model call
inside the web request), run by the editor's task (``queued_runs.run_item``)."""

from __future__ import annotations

from django.utils.translation import gettext as _

from ..exceptions import LLMActionError
from ..models import InteractionStatus, InteractionTrigger, ItemStatus, JobStatus, LLMJobItem


class Cancelled(LLMActionError):
    code = "cancelled"


def run_queued(item: LLMJobItem) -> str:
    """Run a claimed snippet item to its outcome (``LLMService.run``: a new revision, or a
    direct write); an answer stored by a worker that died is written without calling again.
    Returns the status."""
    from ..editor import leases as editor
    from ..jobs.snippets import snippet_of
    from ..models import LLMJob
    from ..queued_runs import stored_result
    from ..service import LLMService

    job = item.job
    obj = snippet_of(item)
    if obj is None or job.action is None:
        message = _("The snippet or the action no longer exists.")
        editor._finish(item, ItemStatus.FAILED, {"code": "gone", "message": message}, error="gone")
        return "failed"

    def link(interaction) -> None:
        editor._link(item, interaction=interaction)

    def refuse_if_cancelled(interaction) -> None:
        # Inside the transaction that writes: a cancelled run writes nothing.
        if LLMJob.objects.filter(pk=job.pk, status=JobStatus.CANCELLED).exists():
            raise Cancelled(_("Cancelled: nothing was written."), interaction=interaction)
        link(interaction)

    stored = item.interaction if item.interaction_id else None
    service = LLMService()
    try:
        if stored is not None and stored.status == InteractionStatus.ANSWERED:
            interaction = service.apply_stored(stored, job.user, on_success=refuse_if_cancelled)
        else:
            interaction = service.run(
                job.action,
                obj,
                job.user,
                trigger=InteractionTrigger.SNIPPET_EDITOR,
                on_answer=link,
                on_success=refuse_if_cancelled,
            )
    except Cancelled as e:
        editor._finish(item, ItemStatus.CANCELLED, {}, interaction=e.interaction)
        return "cancelled"
    except LLMActionError as e:
        failed = e.interaction if e.interaction is not None and e.interaction.pk else None
        result = {"code": e.code, "message": e.message, "retryable": e.retryable}
        editor._finish(item, ItemStatus.FAILED, result, interaction=failed, error=e.message)
        return "failed"
    editor._finish(item, ItemStatus.SUCCEEDED, stored_result(item, interaction), interaction)
    return "succeeded"
