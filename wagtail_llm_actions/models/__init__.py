"""The app's models, one module per aggregate; every name is importable from here.

- :mod:`.prompts`: :class:`LLMPrompt`, reusable templates with a revision history.
- :mod:`.actions`: :class:`LLMAction` and its choices; :mod:`.validation` holds what its
  ``clean()`` checks against the provider policy and the page types.
- :mod:`.pipelines`: :class:`LLMPipeline` and its :class:`LLMPipelineStep`.
- :mod:`.interactions`: :class:`LLMInteraction` (one model call, the audit log) and
  :class:`LLMRun` (several calls as one run), with their choices and the report's index.
- :mod:`.jobs`: :class:`LLMJob`, its :class:`LLMJobItem` and :class:`LLMProviderSlots`.
- :mod:`.budgets`: :class:`LLMBudget`, its periods' :class:`LLMBudgetUsage` and the calls in
  flight (:class:`LLMBudgetReservation`).
- :mod:`.cache`: :class:`LLMCachedResponse`, answers kept for identical calls.
- :mod:`.translation`: :class:`LLMTranslationSettings` (what makes an action translate)
  and :class:`LLMTranslationSegment` (per-segment translation memory).
- :mod:`.image_fields`: what an action that runs on images sets (abstract
  :class:`~.image_fields.ImageSourceFields`, mixed into :class:`LLMAction`).
- :mod:`.base`: what several share (:class:`OrderedJSONField`, :class:`RevisionLinks`).
"""

from .actions import (
    DEFAULT_REDUCE_PROMPT,
    DEFAULT_TRIGGER_DELAY,
    REDUCE_VARIABLES,
    ActionTrigger,
    CutAnswers,
    LLMAction,
    LongContent,
    OutputMode,
)
from .base import OrderedJSONField, RevisionLinks
from .budgets import BudgetPeriod, LLMBudget, LLMBudgetReservation, LLMBudgetUsage
from .cache import LLMCachedResponse
from .image_fields import DEFAULT_IMAGE_SIZE, ImageFormat, SourceKind, image_text_fields
from .interactions import (
    REPORT_INDEX_FIELDS,
    InteractionOutcome,
    InteractionStatus,
    InteractionTrigger,
    LLMInteraction,
    LLMRun,
    ReportCoverIndex,
    RunKind,
    RunStatus,
)
from .jobs import ItemStatus, JobKind, JobStatus, LLMJob, LLMJobItem, LLMProviderSlots
from .pipelines import INLINE_STEP_FIELDS, LLMPipeline, LLMPipelineStep
from .prompts import LLMPrompt
from .site_settings import BulkRunSettings, CanaryRule
from .translation import LLMTranslationSegment, LLMTranslationSettings

__all__ = [
    "BulkRunSettings",
    "CanaryRule",
    "DEFAULT_REDUCE_PROMPT",
    "DEFAULT_TRIGGER_DELAY",
    "INLINE_STEP_FIELDS",
    "REDUCE_VARIABLES",
    "REPORT_INDEX_FIELDS",
    "ActionTrigger",
    "CutAnswers",
    "InteractionOutcome",
    "InteractionStatus",
    "InteractionTrigger",
    "ItemStatus",
    "JobKind",
    "JobStatus",
    "BudgetPeriod",
    "DEFAULT_IMAGE_SIZE",
    "ImageFormat",
    "SourceKind",
    "image_text_fields",
    "LLMAction",
    "LLMBudget",
    "LLMBudgetReservation",
    "LLMBudgetUsage",
    "LLMCachedResponse",
    "LLMInteraction",
    "LLMJob",
    "LLMJobItem",
    "LLMPipeline",
    "LLMPipelineStep",
    "LLMPrompt",
    "LLMProviderSlots",
    "LLMRun",
    "LLMTranslationSegment",
    "LLMTranslationSettings",
    "LongContent",
    "OrderedJSONField",
    "OutputMode",
    "ReportCoverIndex",
    "RevisionLinks",
    "RunKind",
    "RunStatus",
]
