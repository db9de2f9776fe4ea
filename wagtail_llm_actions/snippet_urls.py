"""Admin URLs of snippet actions: run one on a snippet (queued), translate a translatable one
into other locales (queued), undo a direct write."""

from django.urls import path

from .lazy import lazy_view

VIEWS = "wagtail_llm_actions.views.snippets"

app_name = "wagtail_llm_actions_snippets"
urlpatterns = [
    path(
        "<str:app_label>/<str:model_name>/<str:pk>/run/<int:action_id>/",
        lazy_view(f"{VIEWS}.run"),
        name="run",
    ),
    path(
        "<str:app_label>/<str:model_name>/<str:pk>/translate/",
        lazy_view("wagtail_llm_actions.views.translate.SnippetTranslateView"),
        name="translate",
    ),
    path("undo/<int:interaction_id>/", lazy_view(f"{VIEWS}.undo"), name="undo"),
]
