"""Admin URLs of the interaction report, its detail pages and the per-action view.

Views are imported on the first request (:func:`.lazy.lazy_view`), not when URLs load.
"""

from django.urls import path

from .lazy import lazy_view

REPORT = "wagtail_llm_actions.reports.InteractionReportView"
VIEWS = "wagtail_llm_actions.views"

app_name = "wagtail_llm_actions_report"
urlpatterns = [
    path("", lazy_view(REPORT), name="index"),
    path("results/", lazy_view(REPORT, results_only=True), name="results"),
    path("<int:pk>/", lazy_view(f"{VIEWS}.interactions.InteractionDetailView"), name="detail"),
    path("<int:pk>/rerun/", lazy_view(f"{VIEWS}.interactions.RerunView"), name="rerun"),
    path(
        "<int:pk>/rerun-from-step/",
        lazy_view(f"{VIEWS}.interactions.RerunFromStepView"),
        name="rerun_from_step",
    ),
    path("<int:pk>/discard/", lazy_view(f"{VIEWS}.interactions.DiscardView"), name="discard"),
    path("<int:pk>/keep/", lazy_view(f"{VIEWS}.interactions.KeepView"), name="keep"),
    path("<int:pk>/compare/", lazy_view(f"{VIEWS}.action_stats.CompareView"), name="compare"),
    path("actions/<int:pk>/", lazy_view(f"{VIEWS}.action_stats.ActionStatsView"), name="action"),
    path("actions/<int:pk>/try/", lazy_view(f"{VIEWS}.action_stats.TryOnPageView"), name="try"),
    path("actions/<int:pk>/test/", lazy_view(f"{VIEWS}.action_tryout.TestOnPageView"), name="test"),
]
