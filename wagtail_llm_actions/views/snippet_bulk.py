"""The "Run AI action" bulk action of snippet listings (Wagtail's ``SnippetBulkAction``): an
action over the selected snippets as a job on the bulk engine (estimate first, one revision
or direct write per snippet, resumable, unchanged snippets skipped).

The confirmation screen offers the enabled actions that run on the listing's model, shows
how many snippets will run, which are skipped and why, and the estimate
(:func:`..jobs.plan_snippet_job`); "Start" creates the job, queues it and returns to the
listing with a link to the job's progress page.
"""

from __future__ import annotations

from django import forms
from django.contrib.contenttypes.models import ContentType
from django.utils.functional import classproperty
from django.utils.translation import gettext as _
from django.utils.translation import gettext_lazy
from wagtail.admin.views.bulk_action import BulkAction
from wagtail.snippets.bulk_actions.snippet_bulk_action import SnippetBulkAction

from ..bulk_actions import ConfirmScreen, action_field, enqueue_started
from ..conf import with_feature
from ..lazy import lazy_module
from ..models import JobKind, LLMAction

jobs = lazy_module("wagtail_llm_actions.jobs")


class RunSnippetActionForm(forms.Form):
    action = action_field()
    force = forms.BooleanField(
        required=False,
        label=gettext_lazy("Re-run unchanged snippets"),
        help_text=gettext_lazy(
            "Snippets whose newest revision (or row) already holds this action's answer for "
            "the same content, prompt and settings are skipped unless you tick this."
        ),
    )

    def __init__(self, *args, model=None, **kwargs):
        super().__init__(*args, **kwargs)
        content_type = ContentType.objects.get_for_model(model) if model is not None else None
        self.fields["action"].queryset = LLMAction.objects.filter(
            enabled=True, translation__isnull=True, snippet_types=content_type
        ).order_by("name")


class RunSnippetActionBulkAction(ConfirmScreen, SnippetBulkAction):
    display_name = with_feature(gettext_lazy("Run %(feature)s action"))
    action_type = "run_llm_snippet_action"
    aria_label = with_feature(gettext_lazy("Run %(feature)s action on the selected snippets"))
    template_name = "wagtail_llm_actions/bulk_actions/confirm_run_snippet_action.html"
    action_priority = 45
    form_class = RunSnippetActionForm

    @classproperty
    def models(cls):
        from ..snippets import snippet_models

        return snippet_models()

    def __init__(self, request, model):
        super().__init__(request, model)
        self._ids = None
        self._result: dict = {}

    def get_form_kwargs(self):
        return {**super().get_form_kwargs(), "model": self.model}

    def get_selected_ids(self) -> list[str]:
        return self.selected_ids(lambda pk: pk or None)

    def get_actionable_objects(self):
        # Permission is a per-snippet skip reason of the job, not a refusal.
        return self.get_selected_ids(), {}

    def get_context_data(self, **kwargs):
        context = super(BulkAction, self).get_context_data(**kwargs)
        form = context["form"]
        ids = self.get_selected_ids()
        action = form.cleaned_data["action"] if form.is_bound and form.is_valid() else None
        plan = jobs.plan_snippet_job(action, self.request.user, self.model, ids) if action else None
        context.update(
            self.screen_context(form, ids),
            plan=plan,
            can_start=plan is not None and plan.eligible > 0,
            direct=plan is not None and not _keeps_revisions(self.model),
            model_opts=self.model._meta,
        )
        return context

    def form_valid(self, form):
        return self.start_job(
            form,
            _("No snippet would run with these options: nothing was started."),
            _("“%(name)s” started on %(count)s snippet(s)."),
        )

    def get_execution_context(self):
        data = self.cleaned_form.cleaned_data
        return {
            "model": self.model,
            "user": self.request.user,
            "action": data["action"],
            "force": data["force"],
            "result": self._result,
        }

    @classmethod
    def execute_action(
        cls, objects, action=None, user=None, model=None, force=False, result=None, **kw
    ):
        job = jobs.create_snippet_job(action, user, model, objects, force=force, kind=JobKind.BULK)
        return enqueue_started(job, result), 0

    def get_success_message(self, num_parent_objects, num_child_objects):
        return None  # form_valid adds a message with a link to the job


def _keeps_revisions(model: type) -> bool:
    from ..snippets import keeps_revisions

    return keeps_revisions(model)
