"""Snippet viewsets for prompts and actions, under one "LLM actions" menu group."""

from __future__ import annotations

from django.core.exceptions import PermissionDenied
from django.utils.translation import gettext_lazy as _
from wagtail.admin.panels import FieldPanel, FieldRowPanel, MultiFieldPanel, ObjectList
from wagtail.permission_policies import ModelPermissionPolicy
from wagtail.snippets.views import chooser
from wagtail.snippets.views.snippets import EditView, SnippetViewSet, SnippetViewSetGroup

from .forms import LLMActionForm
from .models import LLMAction, LLMPrompt
from .views.jobs import JobViewSet


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


class ConfigurersOnlyChooserViewSet(chooser.SnippetChooserViewSet):
    choose_view_class = type("ChooseView", (ConfigurersOnlyMixin, chooser.ChooseView), {})
    choose_results_view_class = type(
        "ChooseResultsView", (ConfigurersOnlyMixin, chooser.ChooseResultsView), {}
    )
    chosen_view_class = type("ChosenView", (ConfigurersOnlyMixin, chooser.SnippetChosenView), {})
    chosen_multiple_view_class = type(
        "ChosenMultipleView", (ConfigurersOnlyMixin, chooser.SnippetChosenMultipleView), {}
    )
    create_view_class = type("CreateView", (ConfigurersOnlyMixin, chooser.SnippetCreateView), {})


class LLMPromptViewSet(SnippetViewSet):
    model = LLMPrompt
    chooser_viewset_class = ConfigurersOnlyChooserViewSet
    icon = "openquote"
    menu_label = _("Prompts")
    menu_name = "llm_prompts"
    url_prefix = "llm-actions/prompts"
    list_display = ["name", "slug", "variables", "updated_at"]
    list_filter = []
    search_fields = ["name", "template", "description"]
    ordering = ["name"]
    panels = [
        FieldPanel("name"),
        FieldPanel("slug"),
        FieldPanel("template"),
        FieldPanel("description"),
    ]


class LLMActionEditView(EditView):
    """The action's edit view, with a link to its runs and cost in the header menu."""

    def get_header_more_buttons(self):
        from django.urls import reverse
        from wagtail.admin.widgets import Button

        return [
            *super().get_header_more_buttons(),
            Button(
                _("Runs and cost"),
                url=reverse("wagtail_llm_actions_report:action", args=[self.object.pk]),
                icon_name="history",
                priority=30,
            ),
        ]


class LLMActionViewSet(SnippetViewSet):
    model = LLMAction
    chooser_viewset_class = ConfigurersOnlyChooserViewSet
    edit_view_class = LLMActionEditView
    icon = "cogs"
    menu_label = _("Actions")
    menu_name = "llm_action_list"
    url_prefix = "llm-actions/actions"
    list_display = ["name", "source_field", "target_field", "model", "output_mode", "enabled"]
    list_filter = ["enabled", "output_mode", "model"]
    search_fields = ["name", "slug", "description", "model"]
    ordering = ["name"]
    edit_handler = ObjectList(
        [
            MultiFieldPanel(
                [FieldPanel("name"), FieldPanel("slug"), FieldPanel("description")],
                heading=_("Action"),
            ),
            MultiFieldPanel(
                [
                    FieldPanel("page_types"),
                    FieldRowPanel([FieldPanel("source_field"), FieldPanel("target_field")]),
                    FieldPanel("output_mode"),
                    FieldPanel("enabled"),
                ],
                heading=_("Content"),
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


class LLMActionsViewSetGroup(SnippetViewSetGroup):
    items = (LLMActionViewSet, LLMPromptViewSet, JobViewSet)
    menu_icon = "cogs"
    menu_label = _("LLM actions")
    menu_name = "llm_actions"
    menu_order = 900
