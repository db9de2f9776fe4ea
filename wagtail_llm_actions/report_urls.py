"""Admin URLs of the interaction report, its detail pages and the per-action view.

Views are imported on the first request (:func:`.lazy.lazy_view`), not when URLs load.
"""

from django.urls import path
from django.views.generic import RedirectView

from .lazy import lazy_view

REPORT = "wagtail_llm_actions.reports.InteractionReportView"
VIEWS = "wagtail_llm_actions.views"

#: "Try on a page", under the actions' URLs (``llm-actions/actions/<pk>/try/``): one place to
#: try an action on a page, with the "Actions" menu item highlighted.
TRYOUT_NAMESPACE = "wagtail_llm_actions_tryout"
tryout_urlpatterns = [
    path("", lazy_view(f"{VIEWS}.action_tryout.TestOnPageView"), name="try"),
]

app_name = "wagtail_llm_actions_report"
urlpatterns = [
    path("", lazy_view(REPORT), name="index"),
    path("results/", lazy_view(REPORT, results_only=True), name="results"),
    path("<int:pk>/", lazy_view(f"{VIEWS}.interactions.InteractionDetailView"), name="detail"),
    # Rerun, Rerun from step: confirmed (GET), then queued (POST); see views.queued_runs
    path("<int:pk>/rerun/", lazy_view(f"{VIEWS}.queued_runs.RerunView"), name="rerun"),
    path(
        "<int:pk>/rerun-from-step/",
        lazy_view(f"{VIEWS}.queued_runs.RerunFromStepView"),
        name="rerun_from_step",
    ),
    path("runs/<int:job_id>/", lazy_view(f"{VIEWS}.queued_runs.QueuedRunView"), name="queued_run"),
    # "Translate into…" from the page editor's action menu (views.translate)
    path(
        "translate/<int:page_id>/", lazy_view(f"{VIEWS}.translate.TranslateView"), name="translate"
    ),
    path(
        "runs/<int:job_id>/done/",
        lazy_view(f"{VIEWS}.queued_runs.QueuedRunDoneView"),
        name="queued_run_done",
    ),
    path(
        "jobs/<int:pk>/cancel/",
        lazy_view(f"{VIEWS}.queued_runs.CancelJobConfirmView"),
        name="confirm_cancel_job",
    ),
    path(
        "jobs/<int:pk>/retry/",
        lazy_view(f"{VIEWS}.queued_runs.RetryJobConfirmView"),
        name="confirm_retry_job",
    ),
    path("<int:pk>/discard/", lazy_view(f"{VIEWS}.interactions.DiscardView"), name="discard"),
    path("<int:pk>/keep/", lazy_view(f"{VIEWS}.interactions.KeepView"), name="keep"),
    path("<int:pk>/compare/", lazy_view(f"{VIEWS}.action_stats.CompareView"), name="compare"),
    path("actions/<int:pk>/", lazy_view(f"{VIEWS}.action_stats.ActionStatsView"), name="action"),
    path("actions/<int:pk>/try/", lazy_view(f"{VIEWS}.action_stats.TryOnPageView"), name="try"),
    # "Try on a page" lives with the actions (TRYOUT_URLS below), so the menu shows "Actions".
    path(
        "actions/<int:pk>/test/",
        RedirectView.as_view(pattern_name=f"{TRYOUT_NAMESPACE}:try", query_string=True),
        name="test",
    ),
]
