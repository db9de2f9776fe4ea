"""``local/vision``: an offline, deterministic "description" of the image a request carries.

It reads the first image part of the last user message (a ``data:`` URL, as the app sends
renditions) and says what it can know without a model: the dimensions, the two or three
dominant colours, and the words of a file name found in the prompt's text, e.g.
"A 640×480 image, mostly blue and white: sunset beach". Same image, same answer.
"""

from __future__ import annotations

import base64
import binascii
import io
import re

from django.utils.translation import gettext

from .base import BadRequestError

#: A small palette to name colours by (the nearest one wins).
PALETTE: dict[str, tuple[int, int, int]] = {
    "black": (0, 0, 0),
    "white": (255, 255, 255),
    "grey": (128, 128, 128),
    "red": (220, 30, 30),
    "orange": (245, 140, 20),
    "yellow": (245, 220, 40),
    "green": (40, 170, 60),
    "blue": (40, 80, 220),
    "purple": (130, 50, 170),
    "pink": (240, 130, 180),
    "brown": (130, 80, 40),
}

_FILE_NAME_RE = re.compile(r"([\w-]+(?:\.[\w-]+)*)\.(?:jpe?g|png|gif|webp|avif|bmp|tiff?)\b", re.I)


def image_parts(messages: list[dict]) -> list[str]:
    """The image URLs of the last user message's parts, in order."""
    for message in reversed(messages or []):
        if not isinstance(message, dict) or message.get("role") != "user":
            continue
        content = message.get("content")
        if not isinstance(content, list):
            return []
        urls = []
        for part in content:
            if isinstance(part, dict) and part.get("type") == "image_url":
                value = part.get("image_url")
                urls.append(value.get("url", "") if isinstance(value, dict) else str(value or ""))
        return urls
    return []


def decode_data_url(url: str) -> bytes:
    """The bytes of a base64 ``data:`` URL; BadRequestError for anything else."""
    head, sep, data = (url or "").partition(",")
    if not sep or not head.startswith("data:") or not head.endswith(";base64"):
        raise BadRequestError(gettext("local/vision reads images sent as base64 data: URLs."))
    try:
        return base64.b64decode(data, validate=True)
    except (binascii.Error, ValueError) as e:
        raise BadRequestError(gettext("The image sent is not valid base64.")) from e


def nearest_colour(rgb: tuple[int, int, int]) -> str:
    def distance(name: str) -> int:
        return sum((a - b) ** 2 for a, b in zip(PALETTE[name], rgb, strict=True))

    return min(PALETTE, key=distance)


def dominant_colours(image, count: int = 3) -> list[str]:
    """The names of the colours covering most of ``image`` (a Pillow image), at least 15%."""
    small = image.convert("RGB").resize((32, 32))
    totals: dict[str, int] = {}
    for pixels, rgb in small.getcolors(32 * 32) or []:
        name = nearest_colour(rgb)
        totals[name] = totals.get(name, 0) + pixels
    ranked = sorted(totals.items(), key=lambda item: (-item[1], item[0]))
    names = [name for name, pixels in ranked if pixels >= 0.15 * 32 * 32][:count]
    return names or [ranked[0][0]]


def file_name_words(text: str) -> str:
    """The words of the first file name in ``text`` ("sunset-beach_AbC1234.jpg" -> "sunset
    beach": the suffix Django adds to a name already taken is left out)."""
    match = _FILE_NAME_RE.search(text or "")
    if not match:
        return ""
    stem = re.sub(r"_[A-Za-z0-9]{7}$", "", match.group(1))
    return " ".join(w for w in re.split(r"[\s._-]+", stem) if w and not w.isdigit())


def describe(messages: list[dict], text: str) -> str:
    """The answer of ``local/vision`` to ``messages`` (``text``: the user message's text)."""
    from PIL import Image, UnidentifiedImageError

    urls = image_parts(messages)
    if not urls:
        raise BadRequestError(gettext("local/vision needs an image in the user message."))
    try:
        image = Image.open(io.BytesIO(decode_data_url(urls[0])))
        image.load()
    except (UnidentifiedImageError, OSError) as e:
        raise BadRequestError(gettext("local/vision could not read the image sent.")) from e
    colours = dominant_colours(image)
    joined = colours[0] if len(colours) == 1 else ", ".join(colours[:-1]) + " and " + colours[-1]
    answer = gettext("A %(width)s×%(height)s image, mostly %(colours)s") % {
        "width": image.width,
        "height": image.height,
        "colours": joined,
    }
    words = file_name_words(text)
    return f"{answer}: {words}" if words else answer
