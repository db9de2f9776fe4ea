"""Admin URLs of the interaction report, its detail pages and the per-action view."""

from django.urls import path

from .reports import InteractionReportView
from .views.action_stats import ActionStatsView, CompareView, TryOnPageView
from .views.action_tryout import TestOnPageView
from .views.interactions import DiscardView, InteractionDetailView, KeepView, RerunView

app_name = "wagtail_llm_actions_report"
urlpatterns = [
    path("", InteractionReportView.as_view(), name="index"),
    path("results/", InteractionReportView.as_view(results_only=True), name="results"),
    path("<int:pk>/", InteractionDetailView.as_view(), name="detail"),
    path("<int:pk>/rerun/", RerunView.as_view(), name="rerun"),
    path("<int:pk>/discard/", DiscardView.as_view(), name="discard"),
    path("<int:pk>/keep/", KeepView.as_view(), name="keep"),
    path("<int:pk>/compare/", CompareView.as_view(), name="compare"),
    path("actions/<int:pk>/", ActionStatsView.as_view(), name="action"),
    path("actions/<int:pk>/try/", TryOnPageView.as_view(), name="try"),
    path("actions/<int:pk>/test/", TestOnPageView.as_view(), name="test"),
]
