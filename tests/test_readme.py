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


def _layout_section() -> str:
    start = README.index("\n## Layout\n")
    end = README.find("\n## ", start + 1)
    return README[start : end if end != -1 else len(README)]


def test_readme_layout_names_every_module_once():
    """The README's Layout is the newcomer's map: every module of the package (migrations and
    ``__init__`` files aside) is named there, at the start of a line, by its path in the
    package, once."""
    package = Path(__file__).resolve().parent.parent / "wagtail_llm_actions"
    layout = _layout_section()
    missing, twice = [], []
    for path in sorted(package.rglob("*.py")):
        rel = path.relative_to(package).as_posix()
        if rel.startswith("migrations/") or path.name == "__init__.py":
            continue
        found = len(re.findall(rf"(?m)^{re.escape(rel)}\s", layout))
        if found == 0:
            missing.append(rel)
        elif found > 1:
            twice.append(rel)
    assert not missing, f"modules the README's Layout does not name: {missing}"
    assert not twice, f"named more than once in the Layout: {twice}"
