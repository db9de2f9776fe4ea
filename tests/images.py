"""Images the tests make with Pillow, stored as Wagtail images (tests of issue 24 §1)."""

from __future__ import annotations

import io
import random

from django.core.files.base import ContentFile


def image_bytes(width=400, height=300, colour=(40, 80, 220), fmt="JPEG", noise=False) -> bytes:
    """A ``width``×``height`` picture in ``colour``; with ``noise``, random pixels (a file
    that compresses badly, much larger than its rendition)."""
    from PIL import Image

    picture = Image.new("RGB", (width, height), colour)
    if noise:
        rng = random.Random(24)
        picture = Image.frombytes(
            "RGB", (width, height), bytes(rng.getrandbits(8) for _ in range(width * height * 3))
        )
    out = io.BytesIO()
    picture.save(out, fmt)
    return out.getvalue()


def animated_gif() -> bytes:
    from PIL import Image

    frames = [Image.new("RGB", (50, 50), c) for c in ((255, 0, 0), (0, 0, 255))]
    out = io.BytesIO()
    frames[0].save(out, "GIF", save_all=True, append_images=frames[1:], duration=100, loop=0)
    return out.getvalue()


def make_image(name="sunset-beach.jpg", data: bytes | None = None, **fields):
    """A saved Wagtail image (``get_image_model()``) of ``data`` (default: a blue JPEG)."""
    from wagtail.images import get_image_model

    fields.setdefault("title", "Sunset")
    if data is None:
        data = image_bytes()
    image = get_image_model()(file=ContentFile(data, name=name), **fields)
    image.save()
    return image


SVG = (
    b'<svg xmlns="http://www.w3.org/2000/svg" width="10" height="10">'
    b'<rect width="10" height="10" fill="red"/></svg>'
)
