"""Map-reduce after its worker stopped: the parts already paid for are reused, not bought again.

A worker killed (or stopped by django-q2's timeout) in the middle of a map-reduce leaves the
parts it stored and a run that never ended. Running the page again reuses those answers:
the fake server counts the requests, and the old run ends. (The real-worker versions are in
``tests/test_worker_crash.py``.)
"""

from __future__ import annotations

import pytest

from wagtail_llm_actions.models import LLMInteraction, LLMRun
from wagtail_llm_actions.service import LLMService

pytestmark = pytest.mark.django_db


class Killed(BaseException):
    """Stands in for SIGKILL or django-q2's timeout: no ``except Exception`` sees it."""


@pytest.fixture
def map_reduce_action(make_map_reduce_action, fake_llm):
    fake_llm.configure(reply="A part answer.")
    return make_map_reduce_action(
        max_tokens=120,
    )


def posts(fake_llm) -> int:
    return sum(1 for r in fake_llm.requests if r["method"] == "POST")


def run_killed_after(action, post, calls: int) -> None:
    """Run ``action`` on ``post``; its worker "dies" as it sends call number ``calls + 1``."""
    from wagtail_llm_actions import providers

    real_complete = providers.complete
    made = []

    def complete(request):
        if len(made) == calls:
            raise Killed
        made.append(request)
        return real_complete(request)

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(providers, "complete", complete)
        with pytest.raises(Killed):
            LLMService().run(action, post)


def test_a_map_reduce_stopped_halfway_reuses_its_stored_parts(
    make_long_post, map_reduce_action, fake_llm
):
    post, _markers = make_long_post(paragraphs=300)
    run_killed_after(map_reduce_action, post, 3)
    dead = LLMRun.objects.get()
    assert dead.status == "running"  # as a killed worker leaves it
    assert LLMInteraction.objects.filter(run=dead, status="success").count() == 3
    fake_llm.reset()
    fake_llm.configure(reply="A part answer.")

    interaction = LLMService().run(map_reduce_action, post)  # the retry

    run = interaction.run
    parts = list(run.interactions.filter(chunk_index__isnull=False).order_by("chunk_index"))
    assert len(parts) > 3
    assert posts(fake_llm) == len(parts) - 3 + 1  # the missing parts and the combining call
    reused = [p for p in parts if p.reused_from_id]
    assert len(reused) == 3 and all(p.cost == 0 for p in reused)
    assert {p.reused_from.run_id for p in reused} == {dead.pk}
    dead.refresh_from_db()
    assert dead.status == "error" and f"#{run.pk}" in dead.error_message  # ended
    assert interaction.status == "success" and run.status == "success"
    assert type(post).objects.get(pk=post.pk).get_latest_revision_as_object().summary

    # A run that succeeded is never reused: asked again, every part is asked again.
    fake_llm.reset()
    fake_llm.configure(reply="A part answer.")
    again = LLMService().run(map_reduce_action, post)
    assert posts(fake_llm) == len(parts) + 1
    assert not again.run.interactions.filter(reused_from__isnull=False).exists()


def test_only_parts_asked_with_the_same_request_are_reused(
    make_long_post, map_reduce_action, fake_llm
):
    post, _markers = make_long_post(paragraphs=300)
    run_killed_after(map_reduce_action, post, 3)  # run A: 3 parts at temperature 0.2
    map_reduce_action.temperature = 0.9  # another request: A's answers do not fit it
    map_reduce_action.save()
    run_killed_after(map_reduce_action, post, 2)  # run B: 2 parts at temperature 0.9
    fake_llm.reset()
    fake_llm.configure(reply="A part answer.")

    interaction = LLMService().run(map_reduce_action, post)

    parts = interaction.run.interactions.filter(chunk_index__isnull=False)
    assert posts(fake_llm) == parts.count() - 2 + 1  # B's two parts reused, none of A's
    sources = {p.reused_from.parameters["temperature"] for p in parts if p.reused_from_id}
    assert sources == {0.9}
