"""A bug planted in an editor run, and what the editor must then read: a plain failure."""

from __future__ import annotations

import json

from wagtail_llm_actions.models import ItemStatus, JobStatus, LLMJob, LLMJobItem

SECRET_DETAIL = "internal detail /srv/secret/path"


def bug(*args, **kwargs):
    """Stands in for any function: raises an error whose text must never reach the editor."""
    raise RuntimeError(SECRET_DETAIL)


def assert_plain_failure(code: int, body: dict, job_id: int, message: str, caplog) -> None:
    """The status answer says "failed unexpectedly" with the error's type only, the job's item
    failed and the job ended; the administrators' log has the detail the editor does not see."""
    assert code == 200
    assert body["state"] == "failed"
    assert body["result"] == {"code": "internal"}
    assert body["message"] == message
    assert "secret" not in json.dumps(body) and "Traceback" not in json.dumps(body)
    item = LLMJobItem.objects.get(job_id=job_id)
    assert (item.status, item.error) == (ItemStatus.FAILED, "RuntimeError")
    assert LLMJob.objects.get(pk=job_id).status == JobStatus.COMPLETED
    assert SECRET_DETAIL in caplog.text
