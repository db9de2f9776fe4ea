"""The "Translate into…" bulk action of the page listing (issue 23 §1): the selected pages
(and their descendants) into the chosen locales with a translation action, as a job with one
item per page and locale (:mod:`wagtail_llm_actions.jobs.translating`).

The confirmation screen estimates each locale (segments to translate, unchanged and skipped,
edited by hand and kept, tokens and cost) and the whole run against the budgets, as the "Run
AI action" screen does; i18n switched off, an unknown locale or a selected page's own locale
refuse the run before anything is written.
"""

from __future__ import annotations

from django import forms
from django.utils.translation import gettext as _
from django.utils.translation import gettext_lazy
from wagtail.admin.views.bulk_action import BulkAction
from wagtail.models import Locale

from ..bulk_actions import RunLLMActionBulkAction, enqueue_started, over_budget_message
from ..exceptions import LLMActionError
from ..lazy import lazy_module
from ..models import JobKind, LLMAction

jobs = lazy_module("wagtail_llm_actions.jobs")


def locale_choices() -> list[tuple[str, str]]:
    from ..translation.run import language_name

    return [
        (locale.language_code, language_name(locale))
        for locale in Locale.objects.order_by("language_code")
    ]


class TranslatePagesForm(forms.Form):
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
    include_descendants = forms.BooleanField(
        required=False,
        label=gettext_lazy("Include descendants"),
        help_text=gettext_lazy("Also translate every page below the selected pages."),
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


class TranslatePagesBulkAction(RunLLMActionBulkAction):
    display_name = gettext_lazy("Translate into…")
    action_type = "translate_pages"
    aria_label = gettext_lazy("Translate the selected pages into other locales")
    template_name = "wagtail_llm_actions/bulk_actions/confirm_translate.html"
    action_priority = 72
    form_class = TranslatePagesForm

    def applicable_actions(self):
        """Enabled translation actions for the selected pages' (visible) types."""
        return (
            LLMAction.objects.filter(enabled=True, translation__isnull=False)
            .filter(page_types__in=self.selected_type_ids())
            .distinct()
            .order_by("name")
        )

    def current_translation(self, form) -> tuple[LLMAction | None, list[str], bool]:
        if form.is_bound and form.is_valid():
            data = form.cleaned_data
            return data["action"], list(data["locales"]), data["include_descendants"]
        return form.initial.get("action"), [], False

    def get_context_data(self, **kwargs):
        context = super(BulkAction, self).get_context_data(**kwargs)
        form = context["form"]
        ids = self.get_selected_page_ids()
        action, codes, include_descendants = self.current_translation(form)
        plan = None
        if action is not None and codes:
            from ..jobs import translating

            plan = translating.plan_translation(
                action, self.request.user, ids, codes, include_descendants=include_descendants
            )
        startable = plan is not None and not plan.refusal and plan.will_run > 0
        context.update(
            self.screen_context(form, ids),
            plan=plan,
            can_start=startable,
            chosen_action=action,
            model_opts=self.model._meta,
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
        response = super(RunLLMActionBulkAction, self).form_valid(form)
        job = self._result.get("job")
        if job is not None:
            message = _("“%(name)s” started: %(count)s translation(s) (page × locale).") % {
                "name": job.action_name,
                "count": self._result.get("queued", 0),
            }
            if context.get("budget_limit"):
                message = over_budget_message(job.action_name, self._result)
            self.announce_job(message)
        return response

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


__all__ = ["TranslatePagesBulkAction", "TranslatePagesForm"]
