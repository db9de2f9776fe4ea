"""One selection rewritten by the model, its markup kept exactly.

The selection comes as rich-text HTML of one block: text with links, bold, italic and line
breaks. Its tags become placeholders (:func:`..translation.markup.protect`), the model is
asked through the gate (:func:`..run.calls.gate.ask`: cache, budgets, provider) with the
same JSON shape as translation, and the answer is accepted only when every placeholder came
back once and nests (:func:`..translation.markup.restore`). A broken answer is asked again
once; a second one is refused (:class:`SelectionRefused`) and nothing is changed.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass

from django.utils.translation import gettext as _

from ..exceptions import LLMActionError
from ..models import InteractionOutcome, InteractionStatus, InteractionTrigger, LLMInteraction
from ..run import recording
from ..translation import request as translation_request
from ..translation.markup import MarkupMismatch, Protected, has_text, protect, restore

#: The inline markup a selection may hold; anything else means it spans blocks.
INLINE_TAGS = frozenset({"a", "b", "strong", "i", "em", "br"})
MAX_CHARS = 20_000

INSTRUCTIONS = (
    "You edit a passage of website content as instructed. The user message is a JSON object: "
    '"instruction" says what to do, "segments" maps the key "1" to the passage. Answer with '
    'one JSON object mapping "1" to the edited passage, nothing else. Placeholders such as '
    "⟦1⟧ stand for markup (links, bold, italic, line breaks): keep every one of them exactly "
    "once, around the words they belong to. Answer in the passage's language."
)


class SelectionRefused(LLMActionError):
    code = "selection"


@dataclass
class Rewritten:
    html: str
    interaction: LLMInteraction


def check_selection(html: str) -> Protected:
    """``html`` protected; :class:`SelectionRefused` when it spans blocks, has no text or is
    too long."""
    if len(html or "") > MAX_CHARS:
        raise SelectionRefused(_("The selection is too long: select at most a few paragraphs."))
    protected = protect(html)
    if any(name not in INLINE_TAGS for _kind, name in protected.kinds):
        raise SelectionRefused(
            _("The selection spans more than one block: select text within one paragraph.")
        )
    if not has_text(protected):
        raise SelectionRefused(_("Select some text first."))
    return protected


def rewrite_selection(tool, page, user, html: str, on_saved=None) -> Rewritten:
    """The selection ``html`` rewritten by ``tool`` (see :mod:`.tools`) for ``user``;
    ``on_saved(interaction)`` runs in the transaction that records the answer."""
    from ..providers import ProviderError

    protected = check_selection(html)
    interaction = recording.new_interaction(
        tool.action, page, user, InteractionTrigger.EDITOR, None
    )
    interaction.action_name = tool.run_name
    interaction.target_field = ""
    started = time.perf_counter()
    try:
        result, why = None, ""
        for attempt in range(2):
            result, why = _call(tool, protected, interaction, first=attempt == 0)
            if result is not None:
                break
        if result is None:
            raise SelectionRefused(
                _(
                    "The answer did not keep the selection's links and formatting "
                    "(%(why)s), twice. Nothing was changed: try again or edit by hand."
                )
                % {"why": why}
            )
    except ProviderError as e:
        error = LLMActionError(str(e), code=e.code, retryable=e.retryable)
        raise recording.fail(interaction, error, started) from e
    except LLMActionError as e:
        raise recording.fail(interaction, e, started) from e
    interaction.status = InteractionStatus.SUCCESS
    # Not "awaiting review": the answer only ever goes into the open editor, never "Keep"
    # from the interaction log into the action's target field. Discard records "discarded".
    interaction.outcome = InteractionOutcome.NONE
    interaction.output_value = result

    def save() -> None:
        interaction.save()
        if on_saved is not None:
            on_saved(interaction)

    recording.write_logged(interaction, save, what="recording a selection rewrite")
    return Rewritten(result, interaction)


def _call(tool, protected: Protected, interaction, *, first: bool) -> tuple[str | None, str]:
    """One call: the restored answer (or None) and why it was refused."""
    from ..providers import build_request, streaming
    from ..run.calls.common import received, record_call
    from ..run.calls.gate import ask

    messages = _messages(tool, protected)
    built = build_request(tool.action, messages)
    if first:
        interaction.messages = messages
        interaction.parameters = built.public_parameters()
    with streaming.accepting():  # the preview shows the answer as it comes (see .jobs)
        result = received(ask(built, tool.action, interaction, cache=first), interaction)
    record_call(interaction, result, first=first)
    if not first:
        interaction.response_text += "\n\n" + result.text
    text = translation_request.parse(result.text).get("1")
    if text is None or not text.strip():
        return None, _("the answer has no text for it")
    try:
        return restore(text.strip(), protected), ""
    except MarkupMismatch as e:
        return None, str(e)


def _messages(tool, protected: Protected) -> list[dict]:
    lines = [INSTRUCTIONS]
    if tool.action.system_message.strip():
        lines.append(tool.action.system_message.strip())
    payload = {"instruction": tool.instruction, "segments": {"1": protected.text}}
    return [
        {"role": "system", "content": "\n\n".join(lines)},
        {"role": "user", "content": json.dumps(payload, ensure_ascii=False, indent=1)},
    ]
