"""Admin URLs of the review queue of a bulk job (views imported on the first request)."""

from django.urls import path

from .lazy import lazy_view

VIEWS = "wagtail_llm_actions.views.review_queue"

app_name = "wagtail_llm_actions_review"
urlpatterns = [
    path("jobs/<int:pk>/", lazy_view(f"{VIEWS}.ReviewQueueView"), name="queue"),
    path("jobs/<int:pk>/decide/", lazy_view(f"{VIEWS}.ReviewActView"), name="act"),
]
