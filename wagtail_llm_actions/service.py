"""Run an action on an object: the one code path shared by the editor, bulk jobs and commands.

::

    from wagtail_llm_actions.service import LLMService

    interaction = LLMService().run(action, page, user=request.user)
    interaction.revision  # the new draft revision holding the answer

``run`` never touches the live page: it starts from the latest revision, writes the answer
into the target field and saves a new *draft* revision. Every call that reaches the point of
calling a model (and every bad-input failure after the permission check) is recorded as an
``LLMInteraction``; failures raise an ``LLMActionError`` whose ``interaction`` is that row.
"""

from __future__ import annotations

import hashlib
import html
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from django.db import transaction
from django.utils.html import strip_tags
from django.utils.translation import gettext as _
from wagtail.log_actions import log
from wagtail.models import Page

from . import log_actions, outputs
from .conf import get_setting
from .exceptions import (
    ActionNotAllowed,
    ActionNotApplicable,
    ConfigurationProblem,
    LLMActionError,
    OutputRejected,
    PageLocked,
    SourceEmpty,
)
from .extraction import PathError, extract_text
from .models import (
    InteractionOutcome,
    InteractionStatus,
    InteractionTrigger,
    LLMAction,
    LLMInteraction,
)
from .templating import (
    BUILTIN_VARIABLES,
    MissingVariableError,
    TemplateSyntaxError,
    render_template,
    template_variables,
)

logger = logging.getLogger(__name__)

LOG_ACTION = log_actions.GENERATE


@dataclass
class PreparedRun:
    """Everything needed to call the model, built from an object without any I/O."""

    action: LLMAction
    obj: Any
    messages: list[dict[str, str]]
    source_text: str
    source_hash: str
    truncated: bool
    variables: dict[str, str] = field(default_factory=dict)


def content_hash(texts: list[str]) -> str:
    """Stable hash of the extracted content a run depends on."""
    digest = hashlib.sha256()
    for text in texts:
        digest.update(text.encode("utf-8"))
        digest.update(b"\x00")
    return digest.hexdigest()


def working_copy(obj: Any) -> tuple[Any, Any]:
    """The object as its latest revision has it (never the live row), and that revision."""
    if isinstance(obj, Page):
        obj = obj.specific
    if hasattr(obj, "get_latest_revision_as_object"):
        revision = obj.get_latest_revision() if hasattr(obj, "get_latest_revision") else None
        return obj.get_latest_revision_as_object(), revision
    raise ConfigurationProblem(
        _("%(object)s keeps no revisions, so an answer cannot be saved as a draft.")
        % {"object": obj}
    )


def can_edit(user, obj: Any) -> bool:
    if isinstance(obj, Page):
        return obj.permissions_for_user(user).can_edit()
    opts = obj._meta
    return user.has_perm(f"{opts.app_label}.change_{opts.model_name}")


def lock_message(user, obj: Any) -> str | None:
    """Why ``obj`` cannot be changed by ``user`` (or by anyone, without a user), or None."""
    if not hasattr(obj, "get_lock"):
        return None
    lock = obj.get_lock()
    if lock is None:
        return None
    if user is None or lock.for_user(user):
        if user is None:
            return _("The page is locked.")
        # Wagtail's message is HTML (the user's name in <b>); ours is shown as plain text.
        return html.unescape(strip_tags(str(lock.get_message(user))))
    return None


class LLMService:
    """Orchestrates one run; the only writer of drafts and interactions."""

    def check(self, action: LLMAction, obj: Any, user=None) -> None:
        """Raise if ``user`` may not run ``action`` on ``obj`` (permission, lock, type)."""
        if not action.enabled:
            raise ActionNotApplicable(_("The action “%s” is disabled.") % action.name)
        if isinstance(obj, Page) and not action.applies_to(obj):
            raise ActionNotApplicable(
                _("The action “%(action)s” does not apply to %(type)s pages.")
                % {"action": action.name, "type": obj.specific_class._meta.verbose_name}
            )
        if user is not None and not can_edit(user, obj):
            raise ActionNotAllowed()
        message = lock_message(user, obj)
        if message:
            raise PageLocked(message)

    # -- pure steps ------------------------------------------------------------------------

    def variables_for(self, action: LLMAction, obj: Any) -> tuple[dict[str, str], bool, list[str]]:
        """Values for every variable the prompt uses, whether any was cut, and source texts."""
        max_chars = get_setting("MAX_SOURCE_CHARS")
        try:
            names = template_variables(action.prompt.template)
        except TemplateSyntaxError as e:
            raise ConfigurationProblem(str(e)) from e
        values: dict[str, str] = {}
        truncated = False
        sources: list[str] = []
        paths = [("source", action.source_field)] + [
            (name, name) for name in names if name not in BUILTIN_VARIABLES
        ]
        for name, path in paths:
            try:
                extracted = extract_text(obj, path, max_chars=max_chars)
            except PathError as e:
                raise ConfigurationProblem(str(e)) from e
            values[name] = extracted.text
            truncated = truncated or extracted.truncated
            sources.append(extracted.text)
        values["title"] = getattr(obj, "title", "") or str(obj)
        values["url"] = self._url(obj)
        locale = getattr(obj, "locale", None)
        values["locale"] = getattr(locale, "language_code", "") if locale else ""
        values["context"] = action.context_message or ""
        return values, truncated, sources

    @staticmethod
    def _url(obj: Any) -> str:
        try:
            return (obj.get_full_url() if hasattr(obj, "get_full_url") else "") or ""
        except Exception:  # an unsaved or unrouted page has no URL  # noqa: BLE001
            return ""

    def render_messages(self, action: LLMAction, values: dict[str, str]) -> list[dict[str, str]]:
        try:
            prompt = render_template(action.prompt.template, values)
        except (MissingVariableError, TemplateSyntaxError) as e:
            raise ConfigurationProblem(str(e)) from e
        messages: list[dict[str, str]] = []
        if action.system_message.strip():
            messages.append({"role": "system", "content": action.system_message.strip()})
        uses_context = "context" in template_variables(action.prompt.template)
        if action.context_message.strip() and not uses_context:
            messages.append({"role": "system", "content": action.context_message.strip()})
        messages.append({"role": "user", "content": prompt})
        return messages

    def prepare(self, action: LLMAction, obj: Any) -> PreparedRun:
        """Extract, render and hash; raises ``SourceEmpty``/``ConfigurationProblem``."""
        values, truncated, sources = self.variables_for(action, obj)
        if not values["source"].strip():
            raise SourceEmpty(
                _("There is no content in “%(path)s” to send to the model.")
                % {"path": action.source_field}
            )
        return PreparedRun(
            action=action,
            obj=obj,
            messages=self.render_messages(action, values),
            source_text=values["source"],
            source_hash=content_hash(sources),
            truncated=truncated,
            variables=values,
        )

    # -- the run ---------------------------------------------------------------------------

    def run(
        self,
        action: LLMAction,
        obj: Any,
        user=None,
        *,
        working_obj: Any = None,
        save: bool = True,
        trigger: str = InteractionTrigger.API,
        on_success: Callable[[LLMInteraction], None] | None = None,
    ) -> LLMInteraction:
        """Run ``action`` on ``obj`` and return the recorded interaction.

        ``working_obj`` replaces the latest revision as the content to read and write (the
        editor passes an object built from its unsaved form). With ``save=False`` the answer is
        applied to the working object only and no revision is written (outcome "pending").

        ``on_success(interaction)`` is called inside the transaction that saves the draft
        revision and the interaction (the job engine marks its item done there, so that both
        happen or neither); if it raises, the revision is rolled back and the run fails.
        """
        from .providers import ProviderError, build_request, complete

        if isinstance(obj, Page):
            obj = obj.specific
        self.check(action, obj, user)
        base_revision = None
        if working_obj is None:
            working_obj, base_revision = working_copy(obj)

        interaction = self._new_interaction(action, obj, user, trigger, base_revision)
        started = time.perf_counter()
        try:
            prepared = self.prepare(action, working_obj)
            interaction.messages = prepared.messages
            interaction.source_hash = prepared.source_hash
            interaction.source_truncated = prepared.truncated
            try:
                interaction.previous_value = outputs.read_field_value(
                    working_obj, action.target_field
                )
            except PathError as e:
                raise ConfigurationProblem(str(e)) from e
            request = build_request(
                action,
                prepared.messages,
                max_chars=outputs.answer_max_chars(type(working_obj), action.target_field),
            )
            interaction.parameters = request.public_parameters()
            result = complete(request)
            interaction.model = result.model
            interaction.response_text = result.text
            interaction.finish_reason = result.finish_reason or ""
            interaction.prompt_tokens = result.prompt_tokens
            interaction.completion_tokens = result.completion_tokens
            interaction.total_tokens = result.total_tokens
            interaction.cost = result.cost
            interaction.latency_ms = result.latency_ms
            try:
                interaction.output_value = outputs.apply_output(
                    working_obj,
                    action.target_field,
                    result.text,
                    action.output_mode,
                    truncate=bool(get_setting("TRUNCATE_LONG_OUTPUT")),
                )
            except outputs.OutputError as e:
                raise OutputRejected(str(e), code=e.code) from e
            if save:
                with transaction.atomic():
                    revision = self._save_draft(working_obj, user, action)
                    interaction.revision = revision
                    interaction.outcome = InteractionOutcome.DRAFTED
                    interaction.status = InteractionStatus.SUCCESS
                    interaction.save()
                    if on_success is not None:
                        on_success(interaction)
                    log_generated(working_obj, user, revision, action, interaction)
            else:
                with transaction.atomic():
                    interaction.outcome = InteractionOutcome.PENDING
                    interaction.status = InteractionStatus.SUCCESS
                    interaction.save()
                    if on_success is not None:
                        on_success(interaction)
        except ProviderError as e:
            error = LLMActionError(str(e), code=e.code, retryable=e.retryable)
            self._record_failure(interaction, error, started)
            raise error from e
        except LLMActionError as e:
            self._record_failure(interaction, e, started)
            raise
        except Exception as e:
            logger.exception("LLM action %s failed on %r", action.slug, obj)
            error = LLMActionError(
                _("The action failed unexpectedly (%(type)s). The content was not changed.")
                % {"type": type(e).__name__},
                code="internal",
            )
            self._record_failure(interaction, error, started)
            raise error from e
        logger.info(
            "LLM action %s on %s: %s tokens, %s ms",
            action.slug,
            interaction.object_id,
            interaction.total_tokens,
            interaction.latency_ms,
        )
        return interaction

    def dry_run(self, action: LLMAction, obj: Any, user=None) -> PreparedRun:
        """Render the messages a run would send, without calling the model or saving."""
        if isinstance(obj, Page):
            obj = obj.specific
        self.check(action, obj, user)
        working_obj, _revision = working_copy(obj)
        return self.prepare(action, working_obj)

    # -- helpers ---------------------------------------------------------------------------

    def _new_interaction(self, action, obj, user, trigger, base_revision) -> LLMInteraction:
        from django.contrib.contenttypes.models import ContentType

        saved = obj.pk is not None  # a page being created in the editor has no id yet
        return LLMInteraction(
            action=action,
            action_name=action.name,
            page=obj if isinstance(obj, Page) and saved else None,
            content_type=ContentType.objects.get_for_model(obj, for_concrete_model=False),
            object_id=str(obj.pk) if saved else "",
            base_revision=base_revision,
            user=user if user is not None and user.is_authenticated else None,
            trigger=trigger,
            model=action.model,
            prompt_revision_id=action.prompt.current_revision_id(),
        )

    @staticmethod
    def _save_draft(working_obj, user, action):
        # A draft leaves the live row's content as it was, so Wagtail's reference index (built
        # from the live object) would be rebuilt unchanged: skip that work on every run.
        from wagtail.signal_handlers import disable_reference_index_auto_update

        try:
            with disable_reference_index_auto_update():
                return working_obj.save_revision(user=user, log_action=False, clean=True)
        except Exception as e:  # a validation error on the draft: report, don't 500
            from django.core.exceptions import ValidationError

            if isinstance(e, ValidationError):
                raise OutputRejected(
                    _("The draft could not be saved: %(errors)s")
                    % {"errors": "; ".join(e.messages)},
                    code="invalid",
                ) from e
            raise

    @staticmethod
    def _record_failure(interaction: LLMInteraction, error: LLMActionError, started) -> None:
        interaction.status = InteractionStatus.ERROR
        interaction.error_code = error.code
        interaction.error_message = error.message
        interaction.revision = None
        interaction.outcome = InteractionOutcome.NONE
        if interaction.latency_ms is None:
            interaction.latency_ms = int((time.perf_counter() - started) * 1000)
        interaction.save()
        error.interaction = interaction
        if error.code == SourceEmpty.code:
            # Nothing to send: the page is skipped (as a bulk job counts it), not a failure.
            logger.info(
                "LLM action %s skipped (%s): %s",
                interaction.action_name,
                error.code,
                error.message,
            )
            return
        logger.warning(
            "LLM action %s failed (%s): %s",
            interaction.action_name,
            error.code,
            error.message,
        )


def log_generated(obj, user, revision, action: LLMAction, interaction: LLMInteraction) -> None:
    """The page-history entry for an answer written into ``revision``."""
    log(
        instance=obj,
        action=LOG_ACTION,
        user=user,
        revision=revision,
        content_changed=True,
        data={
            "llm_action": {"id": action.pk, "name": action.name},
            "interaction_id": interaction.pk,
            "target_field": action.target_field,
        },
    )


def run_action(action: LLMAction, obj: Any, user=None, **kwargs) -> LLMInteraction:
    """Shortcut for ``LLMService().run(...)``."""
    return LLMService().run(action, obj, user, **kwargs)


__all__ = ["LLMService", "PreparedRun", "run_action", "LOG_ACTION", "SourceEmpty"]
