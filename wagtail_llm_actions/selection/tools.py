"""The selection tools a page offers: the built-in ones (fixed instructions, run with the
model of the first selection-tool action that applies to the page) and each enabled action
marked as a selection tool (its prompt is the instruction)."""

from __future__ import annotations

from dataclasses import dataclass

from django.utils.translation import gettext_lazy as _
from wagtail.models import Page

from ..models import LLMAction

#: Built-in tools: key -> (label shown in the menu, instruction sent to the model).
BUILTIN: dict[str, tuple] = {
    "rewrite": (_("Rewrite"), "Rewrite the text in other words, keeping its meaning."),
    "shorten": (_("Shorten"), "Make the text shorter, keeping what matters."),
    "expand": (_("Expand"), "Expand the text with a little more detail, in the same style."),
    "fix": (
        _("Fix spelling and grammar"),
        "Correct spelling, grammar and punctuation only; change nothing else.",
    ),
    # Change tone, both ways:
    "tone": (_("Friendlier tone"), "Rewrite the text in a friendlier, more conversational tone."),
    "formal": (_("More formal tone"), "Rewrite the text in a more formal, professional tone."),
}
ACTION_PREFIX = "action-"


@dataclass
class Tool:
    key: str
    label: str
    action: LLMAction
    instruction: str

    @property
    def run_name(self) -> str:
        """The name runs of this tool are logged under (the field holds 255 characters)."""
        if self.key.startswith(ACTION_PREFIX):
            return self.action.name[:255]
        return f"{self.action.name}: {self.label}"[:255]


def selection_actions(page: Page) -> list[LLMAction]:
    """The enabled selection-tool actions that apply to ``page``, by name."""
    actions = LLMAction.objects.filter(enabled=True, selection_tool=True).select_related("prompt")
    return [a for a in actions.order_by("name", "pk") if a.applies_to(page)]


def tools_for(page: Page) -> list[Tool]:
    """The tools ``page``'s editor offers (none when no selection-tool action applies)."""
    actions = selection_actions(page)
    if not actions:
        return []
    tools = [Tool(key, str(label), actions[0], text) for key, (label, text) in BUILTIN.items()]
    for action in actions:
        instruction = (action.prompt.template or "").strip() if action.prompt_id else ""
        tools.append(Tool(f"{ACTION_PREFIX}{action.pk}", action.name, action, instruction))
    return tools


def find_tool(page: Page, key: str) -> Tool | None:
    return next((tool for tool in tools_for(page) if tool.key == key), None)
