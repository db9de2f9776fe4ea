"""Wiring only: viewsets, menu items, log actions, bulk action, editor assets."""

from django.utils.translation import gettext_lazy as _
from wagtail import hooks
from wagtail.snippets.models import register_snippet

from . import listing_filters, log_actions
from .conf import INTERACTIONS_LABEL
from .viewsets import LLMActionsViewSetGroup

register_snippet(LLMActionsViewSetGroup)
# "Has unreviewed generated text" and "Out of date for an action" in the page
# listings' filters (Wagtail has no hook for them).
listing_filters.install()


@hooks.register("register_log_actions")
def register_log_actions(actions):
    log_actions.register(actions)


# -- page editor: action buttons ---------------------------------------------------


@hooks.register("register_admin_urls")
def register_editor_urls():
    from django.urls import include, path

    from .editor_urls import editor_app_name, editor_urlpatterns

    return [path("llm-actions/editor/", include((editor_urlpatterns, editor_app_name)))]


@hooks.register("register_admin_urls")
def register_image_urls():
    from django.urls import include, path

    from .image_urls import app_name, urlpatterns

    return [path("llm-actions/images/", include((urlpatterns, app_name)))]


@hooks.register("register_admin_urls")
def register_snippet_urls():
    from django.urls import include, path

    from .snippet_urls import app_name, urlpatterns

    return [path("llm-actions/snippets/", include((urlpatterns, app_name)))]


@hooks.register("register_snippet_action_menu_item")
def register_snippet_menu_item(model):
    """The snippet editor's entries for actions that run on ``model``'s snippets."""
    from .snippets import snippet_models

    if model not in snippet_models():
        return None
    from .views.snippet_menu import SnippetActionsMenuItem

    return SnippetActionsMenuItem()


@hooks.register("register_snippet_action_menu_item")
def register_snippet_translate_menu_item(model):
    """ "Translate into…" in the editor of a translatable snippet with revisions."""
    from wagtail.models import RevisionMixin, TranslatableMixin

    from .snippets import snippet_models

    if model not in snippet_models() or not issubclass(model, TranslatableMixin):
        return None
    if not issubclass(model, RevisionMixin):
        return None
    from .views.snippet_menu import SnippetTranslateMenuItem

    return SnippetTranslateMenuItem()


@hooks.register("insert_editor_js")
def editor_js():
    from django.template.loader import render_to_string

    return render_to_string("wagtail_llm_actions/editor/editor_js.html")


@hooks.register("register_rich_text_features")
def register_selection_tools(features):
    """The selection tools' Draftail control (issue 24 §2), on by default."""
    from wagtail.admin.rich_text.editors.draftail.features import ControlFeature

    control = ControlFeature(
        {"type": "llm-selection"}, js=["wagtail_llm_actions/js/llm-selection-control.js"]
    )
    features.register_editor_plugin("draftail", "llm-selection", control)
    features.default_features.append("llm-selection")


@hooks.register("register_page_action_menu_item")
def register_editor_menu_item():
    from .panels import LLMActionMenuItem

    return LLMActionMenuItem(order=90)


@hooks.register("register_page_action_menu_item")
def register_translate_menu_item():
    from .panels import TranslateMenuItem

    return TranslateMenuItem(order=91)


@hooks.register("register_admin_urls")
def register_pipeline_urls():
    from django.urls import include, path

    from .editor_urls import pipelines_app_name, pipelines_urlpatterns

    return [
        path("llm-actions/pipelines-run/", include((pipelines_urlpatterns, pipelines_app_name)))
    ]


@hooks.register("after_edit_page")
@hooks.register("after_create_page")
def link_generated_values_to_revision(request, page):
    from .signal_handlers import link_saved_interactions

    link_saved_interactions(request, page)


@hooks.register("after_edit_snippet")
@hooks.register("after_create_snippet")
def link_generated_values_to_snippet_revision(request, instance):
    from .signal_handlers import link_saved_interactions

    link_saved_interactions(request, instance)


@hooks.register("before_edit_page")
def automatic_draft_notice(request, page):
    from .panels import automatic_draft_notice as notice

    notice(request, page)


# -- interaction report, detail, per-action view -----------------------------------


@hooks.register("register_admin_urls")
def register_report_urls():
    from django.urls import include, path

    from . import report_urls

    return [
        path("llm-actions/report/", include(report_urls)),
        path(
            "llm-actions/actions/<int:pk>/try/",
            include((report_urls.tryout_urlpatterns, report_urls.TRYOUT_NAMESPACE)),
        ),
    ]


@hooks.register("register_reports_menu_item")
def register_interaction_report_menu_item():
    from django.urls import reverse

    from .reports import InteractionReportMenuItem

    return InteractionReportMenuItem(
        INTERACTIONS_LABEL,
        reverse("wagtail_llm_actions_report:index"),
        name="llm-interactions",
        icon_name="cogs",
        order=1300,
    )


@hooks.register("register_permissions")
def register_interaction_permissions():
    from django.contrib.auth.models import Permission

    # Seeing every interaction; seeing every job, cancelling and retrying any job. The
    # "configure providers" permission is registered by the action's snippet viewset.
    return Permission.objects.filter(
        content_type__app_label="wagtail_llm_actions",
        codename__in=["view_llminteraction", "view_llmjob", "change_llmjob"],
    )


@hooks.register("register_snippet_listing_buttons")
def action_runs_listing_button(snippet, user, next_url=None):
    from django.urls import reverse
    from wagtail.admin.widgets import Button

    from .models import LLMAction

    if isinstance(snippet, LLMAction):
        yield Button(
            _("Runs and cost"),
            url=reverse("wagtail_llm_actions_report:action", args=[snippet.pk]),
            icon_name="history",
            priority=25,
        )
        yield Button(
            _("Try on a sample"),
            url=reverse("wagtail_llm_actions_review:canary_start", args=[snippet.pk]),
            icon_name="crosshairs",
            priority=26,
        )


# -- bulk jobs -----------------------------------------------------------------------


@hooks.register("register_admin_urls")
def register_review_queue_urls():
    from django.urls import include, path

    from . import review_urls

    return [path("llm-actions/review/", include(review_urls))]


# The jobs listing and progress pages are the JobViewSet in the "LLM actions" menu group.


def _run_llm_action_bulk_action():
    from .bulk_actions import RunLLMActionBulkAction

    return RunLLMActionBulkAction


hooks.register("register_bulk_action", _run_llm_action_bulk_action())


def _run_llm_pipeline_bulk_action():
    from .bulk_actions import RunLLMPipelineBulkAction

    return RunLLMPipelineBulkAction


hooks.register("register_bulk_action", _run_llm_pipeline_bulk_action())


def _translate_pages_bulk_action():
    from .views.translate_bulk import TranslatePagesBulkAction

    return TranslatePagesBulkAction


hooks.register("register_bulk_action", _translate_pages_bulk_action())


def _translate_snippets_bulk_action():
    from .views.translate_bulk import TranslateSnippetsBulkAction

    return TranslateSnippetsBulkAction


hooks.register("register_bulk_action", _translate_snippets_bulk_action())


def _run_image_action_bulk_action():
    from .image_bulk_actions import RunImageActionBulkAction

    return RunImageActionBulkAction


hooks.register("register_bulk_action", _run_image_action_bulk_action())


def _run_snippet_action_bulk_action():
    from .views.snippet_bulk import RunSnippetActionBulkAction

    return RunSnippetActionBulkAction


hooks.register("register_bulk_action", _run_snippet_action_bulk_action())


@hooks.register("construct_homepage_panels")
def add_budget_notice(request, panels):
    from .budget_panels import budget_notice_panel

    panel = budget_notice_panel(request.user)
    if panel is not None:
        panels.append(panel)


def _register_site_settings() -> None:
    """Settings → "Bulk runs" (a Wagtail site setting), where wagtail.contrib.settings is
    installed; without it the Django setting alone applies."""
    from django.apps import apps

    if not apps.is_installed("wagtail.contrib.settings"):
        return
    from wagtail.contrib.settings.registry import register_setting

    from .models import BulkRunSettings

    register_setting(icon="tasks")(BulkRunSettings)


_register_site_settings()
