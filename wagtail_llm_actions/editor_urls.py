"""Admin URLs of the page (and snippet) editor's endpoints and of running a pipeline from
the editor.

Views are imported on the first request (:func:`.lazy.lazy_view`), not when URLs load, so
``manage.py check`` and a booting web worker do not import ``views.editor`` or
``views.pipelines``. The run endpoints read the request body before checking the CSRF
token themselves, so their URL entries are marked exempt as the views are.
"""

from django.urls import path
from django.views.decorators.csrf import csrf_exempt

from .lazy import lazy_view

EDITOR = "wagtail_llm_actions.views.editor"
PIPELINES = "wagtail_llm_actions.views.pipelines"
SELECTION = "wagtail_llm_actions.views.selection"
SNIPPETS = "wagtail_llm_actions.views.snippet_editor"

editor_app_name = "wagtail_llm_actions_editor"
editor_urlpatterns = [
    # csrf_protect inside, once the body is known to be readable (see views.editor.run)
    path("run/<int:page_id>/<int:action_id>/", csrf_exempt(lazy_view(f"{EDITOR}.run")), name="run"),
    path(
        "run-new/<int:parent_id>/<int:content_type_id>/<int:action_id>/",
        csrf_exempt(lazy_view(f"{EDITOR}.run_new")),
        name="run_new",
    ),
    path(
        "snippet-run/<str:app_label>/<str:model_name>/<str:pk>/<int:action_id>/",
        csrf_exempt(lazy_view(f"{SNIPPETS}.run")),
        name="snippet_run",
    ),
    path(
        "snippet-run-new/<str:app_label>/<str:model_name>/<int:action_id>/",
        csrf_exempt(lazy_view(f"{SNIPPETS}.run_new")),
        name="snippet_run_new",
    ),
    path(
        "run-pipeline/<int:page_id>/<int:pipeline_id>/",
        csrf_exempt(lazy_view(f"{EDITOR}.run_pipeline")),
        name="run_pipeline",
    ),
    path(
        "selection/<int:page_id>/tools/",
        lazy_view(f"{SELECTION}.selection_tools"),
        name="selection_tools",
    ),
    path(
        "selection/<int:page_id>/run/",
        lazy_view(f"{SELECTION}.run_selection"),
        name="selection_run",
    ),
    path("jobs/<int:job_id>/", lazy_view(f"{EDITOR}.status"), name="status"),
    path("jobs/<int:job_id>/cancel/", lazy_view(f"{EDITOR}.cancel"), name="cancel"),
    path(
        "interactions/<int:interaction_id>/outcome/",
        lazy_view(f"{EDITOR}.outcome"),
        name="outcome",
    ),
    path(
        "interactions/<int:interaction_id>/choose/",
        lazy_view(f"{EDITOR}.choose"),
        name="choose",
    ),
]

pipelines_app_name = "wagtail_llm_actions_pipelines"
pipelines_urlpatterns = [
    path("run/<int:page_id>/<int:pipeline_id>/", lazy_view(f"{PIPELINES}.run"), name="run"),
]
