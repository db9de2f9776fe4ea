"""Admin URLs of the review queue of a bulk job and of canaries (views imported on the first
request)."""

from django.urls import path

from .lazy import lazy_view

VIEWS = "wagtail_llm_actions.views.review_queue"
CANARY = "wagtail_llm_actions.views.canary"

app_name = "wagtail_llm_actions_review"
urlpatterns = [
    path("jobs/<int:pk>/", lazy_view(f"{VIEWS}.ReviewQueueView"), name="queue"),
    path("jobs/<int:pk>/decide/", lazy_view(f"{VIEWS}.ReviewActView"), name="act"),
    path("canary/<int:pk>/", lazy_view(f"{CANARY}.CanaryView"), name="canary"),
    path("canary/action/<int:pk>/", lazy_view(f"{CANARY}.CanaryStartView"), name="canary_start"),
]
