"""Admin URLs of image actions: run one on an image (queued), undo a write."""

from django.urls import path

from .lazy import lazy_view

VIEWS = "wagtail_llm_actions.views.images"

app_name = "wagtail_llm_actions_images"
urlpatterns = [
    path("<int:image_id>/run/<int:action_id>/", lazy_view(f"{VIEWS}.run"), name="run"),
    path("undo/<int:interaction_id>/", lazy_view(f"{VIEWS}.undo"), name="undo"),
    path("jobs/<int:job_id>/undo/", lazy_view(f"{VIEWS}.undo_job"), name="undo_job"),
]
