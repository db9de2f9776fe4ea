"""Jobs over images (issue 24 §1): an image action run on many images by the same engine,
with an estimate, exactly one write per image and resume.

An image item is an ``LLMJobItem`` with no page and a target (``target_type``/``target_id``:
the image model and the image's id). Claims, leases, slots, retries and cancelling are the
engine's own; only running an item differs (:func:`process_image_item`). As for pages, the
paid answer is committed to the item first, so a worker that dies before the image is
written leaves it to the next claim, which writes it without calling again.

::

    plan = plan_image_job(action, user, image_ids)    # counts and estimate, no writes
    job = create_image_job(action, user, image_ids)   # job + one item an image
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from django.contrib.contenttypes.models import ContentType
from django.utils.translation import gettext_lazy as _

from .. import db, estimates, outputs
from ..estimates import IMAGE_PART_TOKENS
from ..models import (
    InteractionOutcome,
    InteractionStatus,
    InteractionTrigger,
    ItemStatus,
    JobKind,
    LLMAction,
    LLMInteraction,
    LLMJob,
    LLMJobItem,
)
from .options import engine_options
from .planning import (
    SKIP_DELETED,
    SKIP_NO_PERMISSION,
    SKIP_UNCHANGED,
    create_target_items,
)

#: Images per query and bulk insert.
CHUNK_SIZE = 500


def image_model():
    from wagtail.images import get_image_model

    return get_image_model()


def editable_image_ids(user, image_ids: Iterable | None = None) -> set:
    """The ids among ``image_ids`` (None: all) of images ``user`` may edit (None: any)."""
    from wagtail.images import get_image_model
    from wagtail.permissions import policy_registry

    permission_policy = policy_registry.get_by_type(get_image_model())

    if user is None:
        queryset = image_model().objects.all()
    else:
        queryset = permission_policy.instances_user_has_permission_for(user, "change")
    if image_ids is not None:
        queryset = queryset.filter(pk__in=list(image_ids))
    return set(queryset.values_list("pk", flat=True))


@dataclass
class ImagePlan:
    """What an image job would do, for the confirmation screen and the command."""

    action: LLMAction
    total: int = 0
    eligible: int = 0
    skipped: dict[str, int] = field(default_factory=dict)
    estimate: estimates.Estimate | None = None


def plan_image_job(action: LLMAction, user, image_ids: Iterable) -> ImagePlan:
    """Count the images a job would run and skip, and estimate its tokens and cost (an
    image part counts ``IMAGE_PART_TOKENS``, plus the prompt's text)."""
    ids = {int(pk) for pk in image_ids}
    existing = set(image_model().objects.filter(pk__in=ids).values_list("pk", flat=True))
    editable = editable_image_ids(user, existing)
    plan = ImagePlan(action=action, total=len(ids), eligible=len(editable))
    for code, count in ((SKIP_DELETED, len(ids - existing)), (SKIP_NO_PERMISSION, 0)):
        if code == SKIP_NO_PERMISSION:
            count = len(existing - editable)
        if count:
            plan.skipped[code] = count
    text = estimates.count_text_tokens(action.prompt.template) + 20  # messages, variables
    per_image = IMAGE_PART_TOKENS + text
    plan.estimate = estimates.estimate(
        action.model, per_image * plan.eligible, plan.eligible, action.max_tokens
    )
    return plan


def create_image_job(
    action: LLMAction,
    user,
    image_ids: Iterable,
    *,
    force: bool = False,
    kind: str = JobKind.BULK,
    trigger: str = InteractionTrigger.BULK,
) -> LLMJob:
    """A job with one item per image: queued, or skipped (deleted, no permission)."""
    ids = sorted({int(pk) for pk in image_ids})
    return db.write(lambda: _create(action, user, ids, force, kind, trigger), what="an image job")


def _create(action, user, ids, force, kind, trigger) -> LLMJob:
    job = LLMJob.objects.create(
        action=action,
        action_name=action.name,
        user=user,
        kind=kind,
        force=force,
        options={
            **engine_options(action.model, trigger),
            "targets": "images",
        },
    )
    content_type = ContentType.objects.get_for_model(image_model())

    def skips(chunk: list) -> list[tuple[str, str]]:
        existing = set(image_model().objects.filter(pk__in=chunk).values_list("pk", flat=True))
        editable = editable_image_ids(user, existing)
        return [(str(pk), _image_skip(pk, existing, editable)) for pk in chunk]

    return create_target_items(job, content_type, ids, skips, CHUNK_SIZE)


def _image_skip(pk, existing: set, editable: set) -> str:
    skip = SKIP_DELETED if pk not in existing else ""
    return skip or ("" if pk in editable else SKIP_NO_PERMISSION)


def unchanged(action: LLMAction, image: Any) -> bool:
    """Whether the image's field still holds this action's last answer written to it."""
    last = (
        LLMInteraction.objects.filter(
            action=action,
            content_type=ContentType.objects.get_for_model(image, for_concrete_model=False),
            object_id=str(image.pk),
            outcome__in=[InteractionOutcome.WRITTEN, InteractionOutcome.UNDONE],
        )
        .order_by("-pk")
        .first()
    )
    if last is None or last.outcome != InteractionOutcome.WRITTEN:
        return False
    return outputs.read_field_value(image, action.target_field) == last.output_value


def process_image_item(ctx, item: LLMJobItem, claim_token: str, action: LLMAction) -> str:
    """Run one claimed image item to an outcome (see :func:`.items.process_item`)."""
    from .. import response_cache
    from ..exceptions import LLMActionError
    from ..images.run import run_on_image, write
    from .claims import LOST, _done, _finish
    from .items import LeaseLost, _item_busy, _item_crashed, _item_error

    job = ctx.job
    image = image_model().objects.filter(pk=item.target_id).first()
    if image is None:
        return _done(item, claim_token, ItemStatus.SKIPPED, skip_reason=SKIP_DELETED)
    stored = item.interaction if item.interaction_id else None

    def on_answer(interaction: LLMInteraction) -> None:
        LLMJobItem.objects.filter(
            pk=item.pk, status=ItemStatus.RUNNING, claimed_by=claim_token
        ).update(interaction=interaction)

    def on_success(interaction: LLMInteraction) -> None:
        result = {
            "image_id": image.pk,
            "tokens": interaction.total_tokens,
            "from_stored_answer": interaction.pk == getattr(stored, "pk", None),
        }
        fields = {"interaction": interaction, "error": "", "skip_reason": "", "result": result}
        if not _finish(item, claim_token, status=ItemStatus.SUCCEEDED, **fields):
            raise LeaseLost(str(_("Another run of the job took this image over; nothing written.")))

    try:
        if stored is not None and stored.status == InteractionStatus.ANSWERED:
            write(stored, image, on_success)  # answered before a worker died: no new call
            return ItemStatus.SUCCEEDED
        if not job.force and unchanged(action, image):
            return _done(item, claim_token, ItemStatus.SKIPPED, skip_reason=SKIP_UNCHANGED)
        with response_cache.bypassed(job.force):  # forced: the model, never the cache
            run_on_image(
                action,
                image,
                job.user,
                trigger=ctx.trigger,
                on_answer=on_answer,
                on_success=on_success,
                call_slot=ctx.call_slot,
            )
        return ItemStatus.SUCCEEDED
    except LeaseLost:
        return LOST
    except LLMActionError as e:
        return _item_error(ctx, item, claim_token, e)
    except Exception as e:  # never leave an item running because of a bug  # noqa: BLE001
        if db.is_busy_error(e):
            return _item_busy(ctx, item, claim_token, e)
        return _item_crashed(job, item, claim_token, e)


__all__ = ["ImagePlan", "create_image_job", "plan_image_job", "process_image_item"]
