"""An image action run from the image's edit view: queued as the editor's runs are (no model
call inside the web request), run by the editor's task (``queued_runs.run_item``)."""

from __future__ import annotations

from django.utils.translation import gettext as _

from ..exceptions import LLMActionError
from ..models import InteractionStatus, InteractionTrigger, ItemStatus, JobStatus, LLMJobItem


class Cancelled(LLMActionError):
    code = "cancelled"


def image_of_item(item: LLMJobItem):
    from wagtail.images import get_image_model

    if not item.target_id:
        return None
    return get_image_model().objects.filter(pk=item.target_id).first()


def run_queued(item: LLMJobItem) -> str:
    """Run a claimed image item to its outcome (see :func:`.run.run_on_image`); an answer
    stored by a worker that died is written without calling again. Returns the status."""
    from ..editor import leases as editor
    from ..models import LLMJob
    from ..queued_runs import stored_result
    from .run import run_on_image, write

    job = item.job
    image = image_of_item(item)
    if image is None or job.action is None:
        message = _("The image or the action no longer exists.")
        editor._finish(item, ItemStatus.FAILED, {"code": "gone", "message": message}, error="gone")
        return "failed"

    def link(interaction) -> None:
        editor._link(item, interaction=interaction)

    def refuse_if_cancelled(interaction) -> None:
        # Inside the transaction that writes the image: a cancelled run writes nothing.
        if LLMJob.objects.filter(pk=job.pk, status=JobStatus.CANCELLED).exists():
            raise Cancelled(_("Cancelled: nothing was written."), interaction=interaction)
        link(interaction)

    stored = item.interaction if item.interaction_id else None
    try:
        if stored is not None and stored.status == InteractionStatus.ANSWERED:
            interaction = write(stored, image, refuse_if_cancelled)
        else:
            interaction = run_on_image(
                job.action,
                image,
                job.user,
                trigger=InteractionTrigger.IMAGE_EDITOR,
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
