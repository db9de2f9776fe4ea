"""The sandbox's image demo: a few pictures drawn with Pillow and an "Alt text" action on
``local/vision`` (``LLM_ACTIONS_VISION_MODEL`` names a real vision model instead), so the
image edit view's button, the image bulk action and Undo work with no key."""

from __future__ import annotations

import io
import os

from django.core.files.base import ContentFile

PICTURES = [
    ("sunset-over-the-harbour.jpg", (245, 140, 20), (40, 80, 220)),
    ("green-allotment.jpg", (40, 170, 60), (130, 80, 40)),
    ("red-library-door.jpg", (220, 30, 30), (255, 255, 255)),
]


def picture(top, bottom, size=(1600, 1000)) -> bytes:
    from PIL import Image, ImageDraw

    image = Image.new("RGB", size, top)
    ImageDraw.Draw(image).rectangle([0, size[1] * 3 // 5, size[0], size[1]], fill=bottom)
    out = io.BytesIO()
    image.save(out, "JPEG", quality=85)
    return out.getvalue()


def create_image_demo(stdout, reset: bool = False) -> None:
    from wagtail.images import get_image_model

    from wagtail_llm_actions.models import LLMAction, LLMPrompt

    Image = get_image_model()
    for name, top, bottom in PICTURES:
        title = name.rsplit(".", 1)[0].replace("-", " ").capitalize()
        if not Image.objects.filter(title=title).exists():
            Image.objects.create(title=title, file=ContentFile(picture(top, bottom), name=name))
    prompt, created = LLMPrompt.objects.get_or_create(
        slug="alt-text",
        defaults={
            "name": "Alt text",
            "template": (
                "Write alt text for this image, in one sentence of at most 20 words, for a "
                "reader who cannot see it. File: {filename}. Title: {title}."
            ),
        },
    )
    if created or prompt.latest_revision_id is None:
        prompt.save_revision()
    action = LLMAction.objects.filter(slug="alt-text").first()
    if action is not None and not reset:
        stdout.write(f"Kept the existing action “{action.name}”.")
        return
    fields = {
        "name": "Alt text",
        "prompt": prompt,
        "source_kind": "image",
        "source_field": "body",
        "target_field": "description",
        "model": os.environ.get("LLM_ACTIONS_VISION_MODEL") or "local/vision",
        "api_base": os.environ.get("LLM_ACTIONS_API_BASE", "")
        if os.environ.get("LLM_ACTIONS_VISION_MODEL")
        else "",
        "api_key_name": os.environ.get("LLM_ACTIONS_API_KEY_NAME", "")
        if os.environ.get("LLM_ACTIONS_VISION_MODEL")
        else "",
        "max_tokens": 80,
    }
    if action is None:
        LLMAction.objects.create(slug="alt-text", **fields)
    else:
        for name_, value in fields.items():
            setattr(action, name_, value)
        action.save()
