"""Page editor runs: build a page from unsaved form data, queue it, run it, report it.

The editor's "Generate summary" button posts the whole, possibly unsaved, edit form. The
request only validates it and queues a job::

    obj = build_page_from_form(page, request.POST, user)       # like Wagtail's preview
    job = create_editor_job(action, page, obj, user)          # LLMJob(kind="editor")
    enqueue_editor_job(job)                                     # django-q2, or inline

A worker runs :func:`run_editor_job`, which calls ``LLMService().run(..., working_obj=obj,
save=False)``: the answer goes into the job item's ``result`` for the browser to put into
the open form, and no revision is written (so the editor's next save causes no "newer
version" conflict). :func:`record_saved_outcomes` links an interaction to the revision that
first saved its output when the editor saves, and records whether it was kept as generated
or edited; :func:`set_outcome` records a discard.

A pipeline runs the same way (:func:`create_editor_pipeline_job`): ``run_pipeline(...,
working_obj=obj, save=False)``; each writing step's interaction comes back as one field of the
result (:func:`pipeline_result`), reviewed and recorded on its own like any editor answer.

The modules, in the order a run goes through them:

* :mod:`.pages`: the page from unsaved form data, the actions a page offers, who may run them;
* :mod:`.snippets`: the same for a snippet with revisions in its editor, and what an item
  runs on (a page or a snippet);
* :mod:`.start`: the checks, creating and queueing the editor job;
* :mod:`.runs`: the django-q2 task :func:`run_editor_job` (its dotted name,
  ``wagtail_llm_actions.editor.run_editor_job``, is stored in the broker: it stays importable
  from here), cancelling, the status the browser polls;
* :mod:`.streams`: a streaming answer's text so far, written for the status polls (and the
  cancel check that stops the stream);
* :mod:`.results`: what the browser fills into the form;
* :mod:`.leases`: an item whose worker died ends (stored answer, run again, or failed);
* :mod:`.outcomes`: after the run: saved with the page (kept or edited), discarded, a
  chosen candidate.

Every name below is importable from this package. Nothing here imports views or templates,
or LiteLLM.
"""

from __future__ import annotations

from .leases import (
    MAX_CLAIMS,
    RECOVERY_SCHEDULE,
    check_editor_leases,
    expire_item,
    lapsed,
    lease_seconds,
    recover_editor_items,
    worker_lost_message,
)
from .outcomes import (
    INTERACTIONS_FIELD,
    choose_candidate,
    parse_interaction_ids,
    record_saved_outcomes,
    saved_outcome,
    set_outcome,
)
from .pages import (
    WIDGET_DRAFTAIL,
    WIDGET_TAGS,
    WIDGET_TEXT,
    FormInvalid,
    actions_for_page,
    actions_for_type,
    build_new_page_from_form,
    build_page_from_form,
    form_class_for,
    new_page,
    serialise_page,
    user_may_create,
    user_may_run,
    widget_kind,
)
from .results import (
    editor_result,
    pipeline_result,
)
from .runs import (
    EditorStatus,
    cancel_editor_job,
    editor_status,
    get_editor_item,
    run_editor_job,
)
from .start import (
    TASK,
    check_can_create,
    check_can_start,
    check_can_start_pipeline,
    create_editor_job,
    create_editor_pipeline_job,
    enqueue_editor_job,
)

__all__ = [
    "EditorStatus",
    "FormInvalid",
    "INTERACTIONS_FIELD",
    "MAX_CLAIMS",
    "RECOVERY_SCHEDULE",
    "TASK",
    "WIDGET_DRAFTAIL",
    "WIDGET_TAGS",
    "WIDGET_TEXT",
    "actions_for_page",
    "actions_for_type",
    "build_new_page_from_form",
    "build_page_from_form",
    "cancel_editor_job",
    "check_can_create",
    "check_can_start",
    "check_can_start_pipeline",
    "check_editor_leases",
    "choose_candidate",
    "create_editor_job",
    "create_editor_pipeline_job",
    "editor_result",
    "editor_status",
    "enqueue_editor_job",
    "expire_item",
    "form_class_for",
    "get_editor_item",
    "lapsed",
    "lease_seconds",
    "new_page",
    "parse_interaction_ids",
    "pipeline_result",
    "record_saved_outcomes",
    "recover_editor_items",
    "run_editor_job",
    "saved_outcome",
    "serialise_page",
    "set_outcome",
    "user_may_create",
    "user_may_run",
    "widget_kind",
    "worker_lost_message",
]
