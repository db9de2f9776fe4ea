"""The messages of an image action: the system and context messages, then one user message
holding the prompt's text (optional) and the rendition as an image part, in LiteLLM's (and
OpenAI's) vision format::

    {"role": "user", "content": [
        {"type": "text", "text": "Write alt text for photo.jpg"},
        {"type": "image_url", "image_url": {"url": "data:image/jpeg;base64,..."}},
    ]}

The log keeps a summary of the image part (type, size, dimensions, hash), never its bytes.
"""

from __future__ import annotations

import os
from typing import Any

from django.utils.translation import gettext as _

from ..exceptions import ConfigurationProblem
from ..models import LLMAction, image_text_fields
from ..run.prepare import render_messages
from .files import Picture


def no_vision(action: LLMAction) -> ConfigurationProblem:
    """The error of a run whose model LiteLLM knows to read no images (nothing sent)."""
    return ConfigurationProblem(
        _(
            "%(model)s cannot read images (LiteLLM's model list says so), so nothing was "
            "sent. Choose a model with vision for “%(action)s”."
        )
        % {"model": action.model, "action": action.name}
    )


def prompt_values(action: LLMAction, image: Any) -> dict[str, str]:
    """The prompt's variables for ``image``: its text fields by name ({title},
    {description}, a custom field), {filename}, {width}, {height}, {context}; {source} is
    the file name (the image itself is the source), {url} and {locale} are empty."""
    values = {name: str(getattr(image, name, "") or "") for name in image_text_fields(type(image))}
    filename = os.path.basename(getattr(image.file, "name", "") or "")
    values.update(
        {
            "filename": filename,
            "source": filename,
            "width": str(image.width or ""),
            "height": str(image.height or ""),
            "context": action.context_message or "",
            "url": "",
            "locale": "",
        }
    )
    values.setdefault("title", image.title)
    return values


def image_messages(action: LLMAction, image: Any, picture: Picture) -> list[dict]:
    """The messages sent for ``image``: the rendered prompt's text with the rendition."""
    return with_picture(render_messages(action, prompt_values(action, image)), picture)


def with_picture(messages: list[dict], picture: Picture) -> list[dict]:
    """``messages`` (rendered) with the rendition joined to the last, the prompt's text."""
    messages = list(messages)
    text = str(messages[-1]["content"] or "").strip()
    parts: list[dict] = [{"type": "text", "text": text}] if text else []
    parts.append({"type": "image_url", "image_url": {"url": picture.data_url}})
    messages[-1] = {"role": "user", "content": parts}
    return messages


def for_the_log(messages: list[dict], picture: Picture) -> list[dict]:
    """``messages`` with the image part's data URL replaced by :meth:`Picture.summary`."""
    logged = []
    for message in messages:
        content = message.get("content")
        if isinstance(content, list):
            content = [
                {"type": "image_url", "image_url": {"url": picture.summary()}}
                if isinstance(part, dict) and part.get("type") == "image_url"
                else part
                for part in content
            ]
        logged.append({**message, "content": content})
    return logged
