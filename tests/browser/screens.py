"""Helpers of the browser tests: log in, switch the admin theme, save screenshots.

Screenshots go to ``test-artifacts/``; with ``UPDATE_SCREENSHOTS=1`` they are also written to
``docs/screenshots/`` (the README links them), so a normal test run leaves the tree as it was.
"""

from __future__ import annotations

import os
import re
import shutil
from pathlib import Path

from django.urls import reverse

ROOT = Path(__file__).resolve().parents[2]
ARTIFACTS = ROOT / "test-artifacts"
DOCS = ROOT / "docs" / "screenshots"

#: (file suffix, UserProfile.theme, UserProfile.contrast): Wagtail's own user preferences.
THEMES = [
    ("", "light", "system"),
    ("-dark", "dark", "system"),
    ("-contrast", "light", "more_contrast"),
]


def log_in(page, live_server, username: str = "admin", password: str = "password") -> None:  # noqa: S107
    page.goto(live_server.url + reverse("wagtailadmin_login"))
    page.fill("#id_username", username)
    page.fill("#id_password", password)
    page.click("button[type=submit]")
    page.wait_for_url(re.compile(r"/admin/$"))


def set_theme(user, theme: str, contrast: str) -> None:
    """Wagtail's admin theme is a per-user preference (Account → Preferences)."""
    from wagtail.users.models import UserProfile

    profile = UserProfile.get_for_user(user)
    profile.theme = theme
    profile.contrast = contrast
    profile.save(update_fields=["theme", "contrast"])


def save_screenshot(page, name: str, **kwargs) -> Path:
    ARTIFACTS.mkdir(exist_ok=True)
    path = ARTIFACTS / f"{name}.png"
    page.screenshot(path=str(path), **kwargs)
    assert path.stat().st_size > 5_000, f"{path} looks empty"
    if os.environ.get("UPDATE_SCREENSHOTS") == "1":
        DOCS.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(path, DOCS / path.name)
    return path


def luminance(css_color: str) -> float:
    """Relative luminance (WCAG) of an ``rgb(...)``/``rgba(...)`` computed colour."""
    channels = [int(float(c)) for c in re.findall(r"[\d.]+", css_color)[:3]]

    def linear(c: int) -> float:
        c = c / 255
        return c / 12.92 if c <= 0.03928 else ((c + 0.055) / 1.055) ** 2.4

    r, g, b = (linear(c) for c in channels)
    return 0.2126 * r + 0.7152 * g + 0.0722 * b


def contrast_ratio(page, selector: str) -> float:
    """Contrast of an element's text against the first opaque background behind it."""
    colors = page.eval_on_selector(
        selector,
        """el => {
            const fg = getComputedStyle(el).color;
            let node = el, bg = 'rgb(255, 255, 255)';
            while (node) {
                const c = getComputedStyle(node).backgroundColor;
                const clear = c === 'transparent' || c.startsWith('rgba(0, 0, 0, 0)');
                if (c && !clear) { bg = c; break; }
                node = node.parentElement;
            }
            return [fg, bg];
        }""",
    )
    a, b = sorted((luminance(colors[0]), luminance(colors[1])), reverse=True)
    return (a + 0.05) / (b + 0.05)
