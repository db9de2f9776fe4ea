"""The README's own configuration examples pass the app's system checks."""

from __future__ import annotations

import re
from pathlib import Path

from wagtail_llm_actions.checks import check_settings

README = (Path(__file__).resolve().parent.parent / "README.md").read_text()


def test_readme_q_cluster_example_passes_the_checks(settings):
    (line,) = re.findall(r"^Q_CLUSTER = \{.*\}$", README, re.M)
    example: dict = {}
    exec(line, {}, example)  # noqa: S102  # our own README, one dict literal
    settings.Q_CLUSTER = example["Q_CLUSTER"]
    settings.WAGTAIL_LLM_ACTIONS = {}
    assert [m.id for m in check_settings(None)] == []


def test_readme_mentions_port_and_needs_no_activated_venv():
    assert "PORT=8001 ./scripts/sandbox.sh" in README
    assert "\npython sandbox/manage.py" not in README and "`python sandbox/manage.py" not in README
