"""The "Translate into…" bulk action of the page listing (issue 23 §1): the selected pages
(and their descendants) into the chosen locales with a translation action, as a job with one
item per page and locale (:mod:`wagtail_llm_actions.jobs.translating`); and the same in the
listings of translatable snippets (§2, :class:`TranslateSnippetsBulkAction`).

The confirmation screen estimates each locale (segments to translate, unchanged and skipped,
edited by hand and kept, tokens and cost) and the whole run against the budgets, as the "Run
AI action" screen does; i18n switched off, an unknown locale or a selected page's own locale
refuse the run before anything is written.
"""

from __future__ import annotations

from django import forms
from django.contrib.contenttypes.models import ContentType
from django.utils.functional import classproperty
from django.utils.translation import gettext as _
from django.utils.translation import gettext_lazy
from wagtail.admin.views.bulk_action import BulkAction
from wagtail.models import Locale

from ..bulk_actions import (
    RunLLMActionBulkAction,
    enqueue_started,
    over_budget_message,
)
from ..exceptions import LLMActionError
from ..lazy import lazy_module
from ..models import JobKind, LLMAction
from .snippet_bulk import RunSnippetActionBulkAction

jobs = lazy_module("wagtail_llm_actions.jobs")


def locale_choices() -> list[tuple[str, str]]:
    from ..translation.run import language_name

    return [
        (locale.language_code, language_name(locale))
        for locale in Locale.objects.order_by("language_code")
    ]


class TranslateForm(forms.Form):
    """The translation action and the locales (and the budget option), for pages or snippets."""

    action = forms.ModelChoiceField(
        queryset=LLMAction.objects.none(),
        label=gettext_lazy("Translation action"),
        empty_label=gettext_lazy("Choose a translation action…"),
    )
    locales = forms.MultipleChoiceField(
        label=gettext_lazy("Translate into"),
        widget=forms.CheckboxSelectMultiple,
        help_text=gettext_lazy("One draft per page and locale; nothing is published."),
    )
    within_budget = forms.BooleanField(
        required=False, label=gettext_lazy("Run only the pages that fit the budgets")
    )

    def __init__(self, *args, actions=None, **kwargs):
        super().__init__(*args, **kwargs)
        self.fields["action"].queryset = (
            actions if actions is not None else LLMAction.objects.none()
        )
        self.fields["locales"].choices = locale_choices()


class TranslatePagesForm(TranslateForm):
    include_descendants = forms.BooleanField(
        required=False,
        label=gettext_lazy("Include descendants"),
        help_text=gettext_lazy("Also translate every page below the selected pages."),
    )
    field_order = ["action", "locales", "include_descendants", "within_budget"]


class TranslateSnippetsForm(TranslateForm):
    def __init__(self, *args, model=None, **kwargs):
        content_type = ContentType.objects.get_for_model(model) if model is not None else None
        actions = LLMAction.objects.filter(
            enabled=True, translation__isnull=False, snippet_types=content_type
        ).order_by("name")
        super().__init__(*args, actions=actions, **kwargs)
        self.fields["locales"].help_text = _(
            "One draft per snippet and locale; nothing is published."
        )
        self.fields["within_budget"].label = _("Run only the snippets that fit the budgets")


class TranslationScreen:
    """The confirmation screen both translation bulk actions share (the per-locale estimate,
    the budgets, Start); mixed before a ``ConfirmScreen`` bulk action, which provides the
    selection (:meth:`selected`) and the plan (:meth:`translation_plan`)."""

    #: The message after Start ("%(name)s", "%(count)s": items queued).
    started_message = gettext_lazy("“%(name)s” started: %(count)s translation(s) (page × locale).")

    def current_translation(self, form) -> tuple[LLMAction | None, list[str], dict]:
        if form.is_bound and form.is_valid():
            data = form.cleaned_data
            return data["action"], list(data["locales"]), data
        return form.initial.get("action"), [], {}

    def get_context_data(self, **kwargs):
        context = super(BulkAction, self).get_context_data(**kwargs)
        form = context["form"]
        ids = self.selected()
        action, codes, data = self.current_translation(form)
        plan = self.translation_plan(action, ids, codes, data) if action and codes else None
        startable = plan is not None and not plan.refusal and plan.will_run > 0
        context.update(
            self.screen_context(form, ids),
            plan=plan,
            can_start=startable,
            chosen_action=action,
            model_opts=self.model._meta,
            snippets=self.for_snippets,
        )
        if startable:
            self.check_budgets(context, form, action, plan)
        return context

    def form_valid(self, form):
        if "preview" in self.request.POST:
            return self.render_to_response(self.get_context_data(form=form))
        context = self.get_context_data(form=form)
        if not context["can_start"]:
            plan = context["plan"]
            form.add_error(
                None,
                (plan.refusal if plan is not None else "")
                or context.get("budget_problem")
                or _("Nothing would be translated with these options: nothing was started."),
            )
            return self.render_to_response(context)
        response = BulkAction.form_valid(self, form)
        job = self._result.get("job")
        if job is not None:
            message = self.started_message % {
                "name": job.action_name,
                "count": self._result.get("queued", 0),
            }
            if context.get("budget_limit"):
                message = self.over_budget(job.action_name, self._result)
            self.announce_job(message)
        return response

    def over_budget(self, name: str, result: dict) -> str:
        return over_budget_message(name, result)


class TranslatePagesBulkAction(TranslationScreen, RunLLMActionBulkAction):
    display_name = gettext_lazy("Translate into…")
    action_type = "translate_pages"
    aria_label = gettext_lazy("Translate the selected pages into other locales")
    template_name = "wagtail_llm_actions/bulk_actions/confirm_translate.html"
    action_priority = 72
    form_class = TranslatePagesForm
    for_snippets = False

    def applicable_actions(self):
        """Enabled translation actions for the selected pages' (visible) types."""
        return (
            LLMAction.objects.filter(enabled=True, translation__isnull=False)
            .filter(page_types__in=self.selected_type_ids())
            .distinct()
            .order_by("name")
        )

    def selected(self) -> list:
        return self.get_selected_page_ids()

    def translation_plan(self, action, ids, codes, data):
        from ..jobs import translating

        return translating.plan_translation(
            action,
            self.request.user,
            ids,
            codes,
            include_descendants=data.get("include_descendants", False),
        )

    def get_execution_context(self):
        data = self.cleaned_form.cleaned_data
        return {
            **super(RunLLMActionBulkAction, self).get_execution_context(),
            "action": data["action"],
            "codes": list(data["locales"]),
            "include_descendants": data["include_descendants"],
            "result": self._result,
            "budget_limit": getattr(self, "_budget_limit", None),
        }

    @classmethod
    def execute_action(
        cls,
        objects,
        action=None,
        user=None,
        codes=(),
        include_descendants=False,
        result=None,
        budget_limit=None,
        **kwargs,
    ):
        try:
            from ..jobs import translating

            job = translating.create_translation_job(
                action,
                user,
                objects,
                list(codes),
                include_descendants=include_descendants,
                kind=JobKind.BULK,
            )
        except LLMActionError:  # refused by the preview already; changed meanwhile
            return 0, 0
        return enqueue_started(job, result, budget_limit, over_budget=0), 0


class TranslateSnippetsBulkAction(TranslationScreen, RunSnippetActionBulkAction):
    """ "Translate into…" in the listings of translatable snippets with revisions (issue 23
    §2): one job of snippet × locale items, each a new draft or revision of the translation."""

    display_name = gettext_lazy("Translate into…")
    action_type = "translate_snippets"
    aria_label = gettext_lazy("Translate the selected snippets into other locales")
    template_name = "wagtail_llm_actions/bulk_actions/confirm_translate.html"
    action_priority = 46
    form_class = TranslateSnippetsForm
    for_snippets = True
    started_message = gettext_lazy(
        "“%(name)s” started: %(count)s translation(s) (snippet × locale)."
    )

    @classproperty
    def models(cls):
        from wagtail.models import RevisionMixin, TranslatableMixin

        from ..snippets import snippet_models

        return [
            m
            for m in snippet_models()
            if issubclass(m, TranslatableMixin) and issubclass(m, RevisionMixin)
        ]

    def selected(self) -> list:
        return self.get_selected_ids()

    def translation_plan(self, action, ids, codes, data):
        from ..jobs import translating

        return translating.plan_snippet_translation(
            action, self.request.user, self.model, ids, codes
        )

    def over_budget(self, name: str, result: dict) -> str:
        return _(
            "“%(name)s” started: %(count)s translation(s) (snippet × locale); %(over)s not "
            "started (over the budget)."
        ) % {"name": name, "count": result.get("queued", 0), "over": result.get("over_budget", 0)}

    def get_execution_context(self):
        data = self.cleaned_form.cleaned_data
        return {
            "model": self.model,
            "user": self.request.user,
            "action": data["action"],
            "codes": list(data["locales"]),
            "result": self._result,
            "budget_limit": getattr(self, "_budget_limit", None),
        }

    @classmethod
    def execute_action(
        cls,
        objects,
        action=None,
        user=None,
        model=None,
        codes=(),
        result=None,
        budget_limit=None,
        **kwargs,
    ):
        try:
            from ..jobs import translating

            job = translating.create_snippet_translation_job(
                action, user, model, objects, list(codes), kind=JobKind.BULK
            )
        except LLMActionError:  # refused by the preview already; changed meanwhile
            return 0, 0
        return enqueue_started(job, result, budget_limit, over_budget=0), 0


__all__ = [
    "TranslatePagesBulkAction",
    "TranslatePagesForm",
    "TranslateSnippetsBulkAction",
    "TranslateSnippetsForm",
]
