"""Snippet viewsets for prompts and actions, under one "LLM actions" menu group."""

from __future__ import annotations

from functools import partial

from django.contrib import messages
from django.core.exceptions import PermissionDenied
from django.http import Http404
from django.urls import path
from django.utils.translation import gettext_lazy as _
from wagtail.admin.panels import (
    FieldPanel,
    FieldRowPanel,
    InlinePanel,
    MultiFieldPanel,
    ObjectList,
    TitleFieldPanel,
)
from wagtail.admin.ui.tables import Column, StatusTagColumn
from wagtail.admin.viewsets.base import ViewSet
from wagtail.admin.widgets.slug import SlugInput
from wagtail.permission_policies import ModelPermissionPolicy
from wagtail.snippets.views import chooser
from wagtail.snippets.views.snippets import (
    CopyView,
    CreateView,
    EditView,
    IndexView,
    SnippetViewSet,
    SnippetViewSetGroup,
)

from .conf import ACTIONS_LABEL
from .forms import ActionPlacementPanel, LLMActionForm, LLMPipelineForm, LLMPipelineStepForm
from .lazy import LazyView, lazy_view
from .models import LLMAction, LLMBudget, LLMPipeline, LLMPrompt


def _parent_view(viewset: SnippetViewSet, name: str):
    """The view Wagtail's viewset builds for ``name`` (the property behind the mixin's)."""
    return getattr(super(DeferredFormViewsMixin, viewset), name)


def _deferred_view(name: str) -> property:
    def view(self):
        view_class = getattr(self, f"{name}_class")
        return LazyView(
            partial(_parent_view, self, name),
            view_class.__name__,
            view_class.__module__,
            # as View.as_view() does: attributes set by decorators on dispatch, the class
            **{**view_class.dispatch.__dict__, "view_class": view_class},
        )

    return property(view, doc=f"Wagtail's ``{name}``, built on its first request.")


class DeferredFormViewsMixin:
    """The views that hold a form class (create, edit, copy, revert) are built on their first
    request instead of when the admin URLs load.

    Wagtail builds the edit handler's form class (a ModelForm with a form field, widget and
    validators per model field, and the pipeline's step formset) for each of these views as
    it makes the URL patterns, that is in ``manage.py check`` and when a web worker starts:
    about 1,600 long-lived objects for these three viewsets. Built on first use, they cost
    the same once, later, and only in a process that serves the admin.
    """

    add_view = _deferred_view("add_view")
    edit_view = _deferred_view("edit_view")
    copy_view = _deferred_view("copy_view")
    revisions_revert_view = _deferred_view("revisions_revert_view")


#: Fields a copy does not take from the original: its identity and its revision/lock state.
NOT_COPIED = frozenset({"latest_revision", "live_revision", "locked", "locked_at", "locked_by"})


def unsaved_copy(original):
    """A new, unsaved instance with ``original``'s field values (no id, no revision, no child
    objects: the POSTed form and formsets supply those)."""
    model = type(original)
    values = {
        field.attname: getattr(original, field.attname)
        for field in model._meta.concrete_fields
        if not field.primary_key and field.name not in NOT_COPIED
    }
    return model(**values)


class SafeCopyView(CopyView):
    """Wagtail's copy view, whose POST creates a copy and never changes the original.

    Wagtail 8.0.1's ``CopyViewMixin.get_initial_form_instance()`` returns the original object
    for POST too, so a POST to the copy URL saved the form *onto the original* (an UPDATE,
    no copy), and needs only the add permission plus view on the original. Wagtail's form
    posts to the add URL, so only a crafted POST reached it. Here the copy form posts to the
    copy URL, and a POST binds an unsaved copy of the original: a copy is created, with the
    original's values for fields the user may not change (the provider fields).
    """

    def get_initial_form_instance(self):
        original = self.get_object()  # Wagtail's check: change or view on the original
        if self.request.method in ("POST", "PUT"):
            return unsaved_copy(original)
        return original

    def get_context_data(self, **kwargs):
        context = super().get_context_data(**kwargs)
        context["action_url"] = self.request.path
        return context


class ConfigurersOnlyMixin:
    """A chooser view for users with a permission on the model (who configure it) only.

    Wagtail's snippet choosers are open to every admin user; prompts and actions are chosen
    only in the action form, by people who configure actions.
    """

    def dispatch(self, request, *args, **kwargs):
        policy = ModelPermissionPolicy(self.model_class)
        if not policy.user_has_any_permission(request.user, {"add", "change", "delete"}):
            raise PermissionDenied
        return super().dispatch(request, *args, **kwargs)


class NoCreationFormMixin:
    """The chooser's create URL without a creation form: 404, not Wagtail's crash.

    Wagtail's chooser ``CreateView`` always has a URL, but without ``form_fields`` (or a
    ``creation_form_class``) it has no form, and a POST fails with ``'NoneType' object has no
    attribute 'is_valid'``. Prompts, actions and pipelines are created in their own forms only
    (where the provider fields are guarded), so the URL answers 404.
    """

    def dispatch(self, request, *args, **kwargs):
        if self.get_creation_form_class() is None:
            raise Http404("This chooser has no create form.")
        return super().dispatch(request, *args, **kwargs)


class ConfigurersOnlyChooserViewSet(chooser.SnippetChooserViewSet):
    choose_view_class = type("ChooseView", (ConfigurersOnlyMixin, chooser.ChooseView), {})
    choose_results_view_class = type(
        "ChooseResultsView", (ConfigurersOnlyMixin, chooser.ChooseResultsView), {}
    )
    chosen_view_class = type("ChosenView", (ConfigurersOnlyMixin, chooser.SnippetChosenView), {})
    chosen_multiple_view_class = type(
        "ChosenMultipleView", (ConfigurersOnlyMixin, chooser.SnippetChosenMultipleView), {}
    )
    create_view_class = type(
        "CreateView", (ConfigurersOnlyMixin, NoCreationFormMixin, chooser.SnippetCreateView), {}
    )


class LLMPromptViewSet(DeferredFormViewsMixin, SnippetViewSet):
    model = LLMPrompt
    copy_view_class = SafeCopyView
    chooser_viewset_class = ConfigurersOnlyChooserViewSet
    icon = "openquote"
    menu_label = _("Prompts")
    menu_name = "llm_prompts"
    url_prefix = "llm-actions/prompts"
    list_display = [
        "name",
        "slug",
        Column(
            "variables",
            label=_("Variables"),
            # words, not a Python list: "title, intro, body.paragraph"
            accessor=lambda prompt: ", ".join(prompt.variables) or "—",
        ),
        "updated_at",
    ]
    list_filter = []
    search_fields = ["name", "template", "description"]
    ordering = ["name"]
    panels = [
        TitleFieldPanel("name", placeholder=False, classname=""),
        FieldPanel("slug", widget=SlugInput),
        FieldPanel("template"),
        FieldPanel("description"),
    ]


class ProviderKeyWarningMixin:
    """After a save: warn (not fail) when the action's key is not set in this environment."""

    def form_valid(self, form):
        response = super().form_valid(form)
        from .providers import missing_key_name

        action = self.object
        name = missing_key_name(action.model, action.api_key_name, action.api_base)
        if name:
            messages.warning(
                self.request,
                _(
                    "The API key %(name)s is not set in this environment, so “%(action)s” will "
                    "fail until it is: set the environment variable %(name)s (or an entry in "
                    "WAGTAIL_LLM_ACTIONS['API_KEYS']) where the site's background tasks run."
                )
                % {"name": name, "action": action.name},
            )
        if action.runs_on_images and action.vision_support() is None:
            messages.warning(
                self.request,
                _(
                    "LiteLLM's model list cannot tell whether %(model)s reads images, so "
                    "“%(action)s” was saved: the first run will tell. If the model cannot "
                    "read images, that run fails and nothing is written."
                )
                % {"model": action.model, "action": action.name},
            )
        return response


class LLMActionCreateView(ProviderKeyWarningMixin, CreateView):
    pass


class LLMActionEditView(ProviderKeyWarningMixin, EditView):
    """The action's edit view, with its runs and cost and "Try on a page" in the header."""

    def get_header_more_buttons(self):
        from django.urls import reverse
        from wagtail.admin.widgets import Button

        from .permissions import can_edit_any_page

        buttons = [
            *super().get_header_more_buttons(),
            Button(
                _("Runs and cost"),
                url=reverse("wagtail_llm_actions_report:action", args=[self.object.pk]),
                icon_name="history",
                priority=30,
            ),
        ]
        if can_edit_any_page(self.request.user):
            buttons.append(
                Button(
                    _("Try on a page"),
                    url=reverse("wagtail_llm_actions_tryout:try", args=[self.object.pk]),
                    icon_name="pick",
                    priority=31,
                )
            )
        return buttons


class LLMActionCopyView(ProviderKeyWarningMixin, SafeCopyView):
    pass


class LLMActionViewSet(DeferredFormViewsMixin, SnippetViewSet):
    model = LLMAction
    copy_view_class = LLMActionCopyView
    chooser_viewset_class = ConfigurersOnlyChooserViewSet
    add_view_class = LLMActionCreateView
    edit_view_class = LLMActionEditView
    icon = "cogs"
    menu_label = _("Actions")
    menu_name = "llm_action_list"
    url_prefix = "llm-actions/actions"
    list_display = [
        "name",
        "source_field",
        "target_field",
        "model",
        "output_mode",
        StatusTagColumn(
            "enabled",
            label=_("Status"),
            accessor=lambda action: _("Enabled") if action.enabled else _("Disabled"),
            primary=lambda action: action.enabled,
            sort_key="enabled",
        ),
    ]
    list_filter = ["enabled", "output_mode", "model"]
    search_fields = ["name", "slug", "description", "model"]
    ordering = ["name"]
    edit_handler = ObjectList(
        [
            MultiFieldPanel(
                [
                    TitleFieldPanel("name", placeholder=False, classname=""),
                    FieldPanel("slug", widget=SlugInput),
                    FieldPanel("description"),
                ],
                heading=_("Action"),
            ),
            ActionPlacementPanel(),
            MultiFieldPanel(
                [
                    FieldPanel("source_kind"),
                    FieldPanel("page_types"),
                    FieldPanel("snippet_types"),
                    FieldPanel("writes_directly"),
                    FieldPanel("source_field"),
                    FieldPanel("target_field"),
                    FieldPanel("output_mode"),
                    FieldPanel("output_fields"),
                    FieldPanel("candidates"),
                    FieldRowPanel([FieldPanel("image_size"), FieldPanel("image_format")]),
                    FieldPanel("enabled"),
                    FieldPanel("selection_tool"),
                ],
                heading=_("Content"),
            ),
            MultiFieldPanel(
                [
                    FieldPanel("translates"),
                    FieldPanel("translation_style"),
                    FieldPanel("translation_glossary"),
                    FieldPanel("translation_do_not_translate"),
                ],
                heading=_("Translation"),
                classname="collapsed",
            ),
            MultiFieldPanel(
                [
                    FieldRowPanel([FieldPanel("trigger"), FieldPanel("trigger_delay")]),
                    FieldPanel("trigger_schedule"),
                    FieldPanel("submit_for_moderation"),
                ],
                heading=_("Triggers"),
            ),
            MultiFieldPanel(
                [
                    FieldRowPanel([FieldPanel("long_content"), FieldPanel("context_window")]),
                    FieldPanel("reduce_prompt"),
                ],
                heading=_("Long content"),
            ),
            MultiFieldPanel(
                [
                    FieldPanel("prompt"),
                    FieldPanel("system_message"),
                    FieldPanel("context_message"),
                ],
                heading=_("Prompt"),
            ),
            MultiFieldPanel(
                [
                    FieldPanel("model"),
                    FieldRowPanel([FieldPanel("api_base"), FieldPanel("api_key_name")]),
                    FieldRowPanel(
                        [
                            FieldPanel("temperature"),
                            FieldPanel("max_tokens"),
                            FieldPanel("timeout"),
                        ]
                    ),
                    FieldPanel("cut_answers"),
                    FieldPanel("fallback_models"),
                    FieldPanel("extra_params"),
                ],
                heading=_("Model"),
            ),
        ],
        base_form_class=LLMActionForm,
    )

    def get_queryset(self, request):
        return LLMAction.objects.select_related("prompt")


class StepsInlinePanel(InlinePanel):
    """The pipeline's steps, with :class:`LLMPipelineStepForm` (which needs the user, for the
    provider fields' permission)."""

    def get_form_options(self):
        options = super().get_form_options()
        options["formsets"][self.relation_name].update(
            form=LLMPipelineStepForm, inherit_kwargs=["for_user"]
        )
        return options


class LLMPipelineViewSet(DeferredFormViewsMixin, SnippetViewSet):
    model = LLMPipeline
    copy_view_class = SafeCopyView
    chooser_viewset_class = ConfigurersOnlyChooserViewSet
    icon = "list-ol"
    menu_label = _("Pipelines")
    menu_name = "llm_pipelines"
    url_prefix = "llm-actions/pipelines"
    list_display = [
        "name",
        "slug",
        StatusTagColumn(
            "enabled",
            label=_("Status"),
            accessor=lambda pipeline: _("Enabled") if pipeline.enabled else _("Disabled"),
            primary=lambda pipeline: pipeline.enabled,
            sort_key="enabled",
        ),
        "updated_at",
    ]
    list_filter = ["enabled"]
    search_fields = ["name", "slug", "description"]
    ordering = ["name"]
    edit_handler = ObjectList(
        [
            # As the action form: the slug follows the name; page types inside the section
            # (a panel of its own labelled "Page types" twice)
            MultiFieldPanel(
                [
                    TitleFieldPanel("name", placeholder=False, classname=""),
                    FieldPanel("slug", widget=SlugInput),
                    FieldPanel("description"),
                    FieldPanel("page_types"),
                    FieldPanel("enabled"),
                ],
                heading=_("Pipeline"),
            ),
            StepsInlinePanel(
                "steps",
                heading=_("Steps"),
                label=_("Step"),
                min_num=1,
                panels=[
                    FieldRowPanel([FieldPanel("name"), FieldPanel("action")]),
                    FieldPanel("writes"),
                    MultiFieldPanel(
                        [
                            FieldPanel("prompt_template"),
                            FieldRowPanel(
                                [
                                    FieldPanel("source_field"),
                                    FieldPanel("target_field"),
                                    FieldPanel("output_mode"),
                                ]
                            ),
                            FieldPanel("model"),
                            FieldRowPanel([FieldPanel("api_base"), FieldPanel("api_key_name")]),
                            FieldRowPanel([FieldPanel("temperature"), FieldPanel("max_tokens")]),
                        ],
                        # not "Or its own prompt" over the "Own prompt" field: said once
                        heading=_("Instead of an action"),
                        classname="collapsed",
                    ),
                ],
            ),
        ],
        base_form_class=LLMPipelineForm,
    )


class JobViewSet(ViewSet):
    """The jobs listing and progress pages, with a menu item in the "LLM actions" group.

    The views (``views/jobs.py``) are imported on the first request, not when URLs load.
    """

    name = "wagtail_llm_actions_jobs"  # views.jobs.URL_NAMESPACE
    url_prefix = "llm-actions/jobs"
    icon = "tasks"
    menu_label = _("Jobs")
    menu_name = "llm_jobs"
    menu_order = 300

    def get_urlpatterns(self):
        views = "wagtail_llm_actions.views.jobs"
        return [
            path("", lazy_view(f"{views}.JobIndexView"), name="index"),
            path(
                "results/",
                lazy_view(f"{views}.JobIndexView", results_only=True),
                name="index_results",
            ),
            path("<int:pk>/", lazy_view(f"{views}.JobDetailView"), name="detail"),
            path("<int:pk>/status/", lazy_view(f"{views}.job_status"), name="status"),
            path("<int:pk>/cancel/", lazy_view(f"{views}.cancel"), name="cancel"),
            path("<int:pk>/retry/", lazy_view(f"{views}.retry"), name="retry"),
            path(
                "<int:pk>/resume/",
                lazy_view("wagtail_llm_actions.views.job_pauses.resume"),
                name="resume",
            ),
            path("<int:pk>/apply-stored/", lazy_view(f"{views}.apply_stored"), name="apply_stored"),
        ]


class LLMBudgetIndexView(IndexView):
    """The budgets listing, with each budget's use this period (two queries a page)."""

    def get_table(self, object_list):
        from .budgets import spend

        rows = {row["budget"].pk: row for row in spend(list(object_list))}
        for budget in object_list:
            budget.spend = rows.get(budget.pk)
        return super().get_table(object_list)


class LLMBudgetViewSet(DeferredFormViewsMixin, SnippetViewSet):
    model = LLMBudget
    index_view_class = LLMBudgetIndexView
    copy_view_class = SafeCopyView  # Wagtail's saved a POST onto the original (lifting caps)
    chooser_viewset_class = ConfigurersOnlyChooserViewSet
    icon = "warning"
    menu_label = _("Budgets")
    menu_name = "llm_budgets"
    url_prefix = "llm-actions/budgets"
    list_display = [
        "name",
        "scope_label",
        "period",
        "spend_label",
        StatusTagColumn(
            "enabled",
            label=_("Status"),
            accessor=lambda budget: _("Enabled") if budget.enabled else _("Disabled"),
            primary=lambda budget: budget.enabled,
            sort_key="enabled",
        ),
    ]
    list_filter = ["period", "enabled"]
    ordering = ["name"]
    panels = [
        FieldPanel("name"),
        MultiFieldPanel(
            [FieldPanel("action"), FieldPanel("user"), FieldPanel("group")],
            heading=_("Whose runs count (blank: everyone's)"),
        ),
        FieldRowPanel([FieldPanel("period"), FieldPanel("max_tokens"), FieldPanel("max_cost")]),
        FieldPanel("enabled"),
    ]


class LLMActionsViewSetGroup(SnippetViewSetGroup):
    items = (LLMActionViewSet, LLMPipelineViewSet, LLMPromptViewSet, LLMBudgetViewSet, JobViewSet)
    menu_icon = "cogs"
    menu_label = ACTIONS_LABEL  # "AI actions": FEATURE_NAME
    menu_name = "llm_actions"
    menu_order = 900
