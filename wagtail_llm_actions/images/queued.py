"""An image action run from the image's edit view: queued as the editor's runs are (no model
call inside the web request), run by the editor's task (``queued_runs.run_item``)."""

from __future__ import annotations

from django.utils.translation import gettext as _

from ..models import InteractionTrigger, LLMJobItem


def image_of_item(item: LLMJobItem):
    from wagtail.images import get_image_model

    if not item.target_id:
        return None
    return get_image_model().objects.filter(pk=item.target_id).first()


def run_queued(item: LLMJobItem) -> str:
    """Run a claimed image item to its outcome (see :func:`.run.run_on_image`); an answer
    stored by a worker that died is written without calling again. Returns the status."""
    from ..queued_runs import run_claimed
    from .run import run_on_image, write

    image = image_of_item(item)

    def run(stored, link, refuse_if_cancelled):
        if stored is not None:
            return write(stored, image, refuse_if_cancelled)
        job = item.job
        return run_on_image(
            job.action,
            image,
            job.user,
            trigger=InteractionTrigger.IMAGE_EDITOR,
            on_answer=link,
            on_success=refuse_if_cancelled,
        )

    return run_claimed(item, image, _("The image or the action no longer exists."), run)
