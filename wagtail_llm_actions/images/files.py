"""The picture an image action sends: a rendition of the image, checked before anything is
sent (a missing or unreadable file, SVG, animation, a rendition over the size limit)."""

from __future__ import annotations

import base64
import hashlib
from dataclasses import dataclass
from typing import Any

from django.utils.translation import gettext as _

from ..conf import get_setting
from ..exceptions import LLMActionError

SUPPORTED = (
    "JPEG, PNG, WebP, GIF without animation, and the other still formats this site's "
    "Wagtail reads (AVIF, HEIC…)"
)


class ImageUnusable(LLMActionError):
    """The image cannot be sent (its file, its format, its size): nothing was sent."""

    code = "image"


@dataclass
class Picture:
    """The rendition sent to the model, as bytes."""

    data: bytes
    media_type: str
    width: int
    height: int

    @property
    def data_url(self) -> str:
        return f"data:{self.media_type};base64," + base64.b64encode(self.data).decode("ascii")

    def summary(self) -> str:
        """What the log keeps instead of the bytes: type, size, dimensions, hash."""
        digest = hashlib.sha256(self.data).hexdigest()[:16]
        return (
            f"[{self.media_type}, {len(self.data)} bytes, {self.width}×{self.height}, "
            f"sha256:{digest}]"
        )


def rendition_spec(size: int, image_format: str) -> str:
    """The Wagtail filter spec of the rendition: ``max-1024x1024|format-jpeg``."""
    return f"max-{int(size)}x{int(size)}|format-{image_format}"


def check_source(image: Any) -> None:
    """Raise :class:`ImageUnusable` if the image's file is missing, unreadable, an SVG or
    animated (read from its header only)."""
    from PIL import Image, UnidentifiedImageError

    if image.is_svg():
        raise ImageUnusable(
            _("“%(title)s” is an SVG, which models cannot read. Supported: %(formats)s.")
            % {"title": image.title, "formats": SUPPORTED}
        )
    try:
        with image.open_file() as f, Image.open(f) as opened:
            animated = bool(getattr(opened, "is_animated", False))
            kind = opened.format or ""
    except (OSError, UnidentifiedImageError, ValueError) as e:
        raise ImageUnusable(
            _("The file of “%(title)s” is missing or unreadable (%(error)s); nothing was sent.")
            % {"title": image.title, "error": type(e).__name__}
        ) from e
    if animated:
        raise ImageUnusable(
            _("“%(title)s” is an animated %(kind)s; send a still image. Supported: %(formats)s.")
            % {"title": image.title, "kind": kind, "formats": SUPPORTED}
        )


def picture(image: Any, size: int, image_format: str) -> Picture:
    """The rendition of ``image`` to send: at most ``size`` pixels on its long side, as
    JPEG or WebP; never the original file. Raises :class:`ImageUnusable`."""
    check_source(image)
    try:
        rendition = image.get_rendition(rendition_spec(size, image_format))
        with rendition.file.open("rb") as f:
            data = f.read()
    except (OSError, ValueError) as e:
        raise ImageUnusable(
            _("A rendition of “%(title)s” could not be made (%(error)s); nothing was sent.")
            % {"title": image.title, "error": type(e).__name__}
        ) from e
    limit = int(get_setting("MAX_IMAGE_BYTES") or 0)
    if limit and len(data) > limit:
        raise ImageUnusable(
            _(
                "The rendition of “%(title)s” is %(size)s bytes, over the %(limit)s bytes a "
                "model accepts here (MAX_IMAGE_BYTES); lower the action's image size."
            )
            % {"title": image.title, "size": len(data), "limit": limit}
        )
    media_type = "image/webp" if image_format == "webp" else "image/jpeg"
    return Picture(data, media_type, rendition.width, rendition.height)
