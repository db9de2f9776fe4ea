"""The "Run AI action" bulk action of the image listing: an image action over the selected
images as a job on the bulk engine (estimate first, one write per image, resumable).

The confirmation screen offers the enabled image actions, shows how many images will run,
which are skipped and why, and the estimate (:func:`jobs.plan_image_job`); "Start" creates
the job, queues it and returns to the listing with a link to the job's progress page.
Answers are written to the images' own fields (images keep no revisions; each write can be
undone from its interaction).
"""

from __future__ import annotations

from django import forms
from django.utils.translation import gettext as _
from django.utils.translation import gettext_lazy
from wagtail.admin.views.bulk_action import BulkAction
from wagtail.images.views.bulk_actions.image_bulk_action import ImageBulkAction

from .bulk_actions import ConfirmScreen, action_field, enqueue_started
from .conf import with_feature
from .lazy import lazy_module
from .models import JobKind, LLMAction

jobs = lazy_module("wagtail_llm_actions.jobs")


class RunImageActionForm(forms.Form):
    action = action_field()
    force = forms.BooleanField(
        required=False,
        label=gettext_lazy("Re-run unchanged images"),
        help_text=gettext_lazy(
            "Images whose field still holds this action's last answer are skipped unless "
            "you tick this."
        ),
    )

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.fields["action"].queryset = LLMAction.objects.filter(
            enabled=True, source_kind="image"
        ).order_by("name")


class RunImageActionBulkAction(ConfirmScreen, ImageBulkAction):
    display_name = with_feature(gettext_lazy("Run %(feature)s action"))
    action_type = "run_llm_image_action"
    aria_label = with_feature(gettext_lazy("Run %(feature)s action on the selected images"))
    template_name = "wagtail_llm_actions/bulk_actions/confirm_run_image_action.html"
    action_priority = 45
    form_class = RunImageActionForm

    def __init__(self, request, model):
        super().__init__(request, model)
        self._ids = None
        self._result: dict = {}

    def get_selected_ids(self) -> list[int]:
        return self.selected_ids(lambda pk: int(pk) if pk.isdigit() else None)

    def get_actionable_objects(self):
        # Permission is a per-image skip reason of the job, not a refusal.
        return self.get_selected_ids(), {}

    def get_context_data(self, **kwargs):
        context = super(BulkAction, self).get_context_data(**kwargs)
        form = context["form"]
        ids = self.get_selected_ids()
        action = form.cleaned_data["action"] if form.is_bound and form.is_valid() else None
        plan = jobs.plan_image_job(action, self.request.user, ids) if action else None
        context.update(
            self.screen_context(form, ids),
            plan=plan,
            can_start=plan is not None and plan.eligible > 0,
        )
        return context

    def form_valid(self, form):
        return self.start_job(
            form,
            _("No image would run with these options: nothing was started."),
            _("“%(name)s” started on %(count)s image(s)."),
        )

    def get_execution_context(self):
        data = self.cleaned_form.cleaned_data
        return {
            **super().get_execution_context(),
            "action": data["action"],
            "force": data["force"],
            "result": self._result,
        }

    @classmethod
    def execute_action(cls, objects, action=None, user=None, force=False, result=None, **kw):
        job = jobs.create_image_job(action, user, objects, force=force, kind=JobKind.BULK)
        return enqueue_started(job, result), 0

    def get_success_message(self, num_parent_objects, num_child_objects):
        return None  # form_valid adds a message with a link to the job
