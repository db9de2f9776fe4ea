"""The opt-in "on upload" trigger of image actions: a new image queues a job for each
enabled image action whose trigger is "When an image is uploaded" (one item, written to
the image's field by the job engine, as the bulk action's items are)."""

from __future__ import annotations

import logging
from typing import Any

from ..models import ActionTrigger, InteractionTrigger, JobKind, LLMAction

logger = logging.getLogger(__name__)


def upload_actions():
    return LLMAction.objects.filter(
        enabled=True, source_kind="image", trigger=ActionTrigger.ON_IMAGE_UPLOAD
    ).select_related("prompt")


def on_image_uploaded(image: Any) -> list:
    """Queue the upload-triggered image actions on ``image`` (after the transaction that
    saved it commits); returns the jobs created (none, usually: one query)."""
    from .. import jobs

    created = []
    for action in upload_actions():
        job = jobs.create_image_job(
            action,
            getattr(image, "uploaded_by_user", None),
            [image.pk],
            kind=JobKind.TRIGGER,
            trigger=InteractionTrigger.ON_IMAGE_UPLOAD,
        )
        jobs.enqueue_job(job)
        created.append(job)
        logger.info("LLM action %s queued for uploaded image %s", action.slug, image.pk)
    return created
