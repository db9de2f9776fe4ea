"""Following a run queued from an admin screen (Rerun, Try on a page), as the browser does."""

from __future__ import annotations

from tests.browser.qworker import run_queued_tasks


def finish_queued(client, response, *, follow: bool = False):
    """``response`` sent the browser to a queued run's progress page: run the queued task
    (the in-process worker), then open the page the progress page goes to when it ends."""
    assert response.status_code == 302, response
    progress = response["Location"]
    assert "/runs/" in progress, progress
    run_queued_tasks()
    return client.get(progress.rstrip("/") + "/done/", follow=follow)
