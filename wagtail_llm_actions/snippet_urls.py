"""Admin URLs of snippet actions: run one on a snippet (queued), undo a direct write."""

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
    path("undo/<int:interaction_id>/", lazy_view(f"{VIEWS}.undo"), name="undo"),
]
