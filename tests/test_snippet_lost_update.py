"""No lost update on snippets: while the model answers, a person saves a new revision of the
snippet (another thread, its own connection); the run's revision keeps that change and adds
only the answer, and the live row stays as it was."""

from __future__ import annotations

import threading

import pytest

from tests.threads import in_thread, join_checked
from wagtail_llm_actions.service import LLMService

pytestmark = pytest.mark.django_db(transaction=True, serialized_rollback=True)


def test_a_save_while_the_model_answers_is_kept(shared_db, fake_llm, api_key_env, superuser):
    from django.contrib.contenttypes.models import ContentType

    from tests.testapp.models import Dish
    from wagtail_llm_actions.models import LLMAction, LLMPrompt

    prompt = LLMPrompt.objects.create(name="S", slug="s", template="Summarize {source}")
    action = LLMAction.objects.create(
        name="Snippet summary",
        slug="snippet-summary",
        source_field="description",
        target_field="summary",
        prompt=prompt,
        model="openai/fake-model",
        api_base=fake_llm.url,
        api_key_name=api_key_env,
        timeout=60,
    )
    action.snippet_types.set([ContentType.objects.get_for_model(Dish)])
    dish = Dish.objects.create(name="Cassoulet", description="Beans and duck.", live=True)
    dish.save_revision()
    saved = threading.Event()

    def reply(request_json):
        saved.wait(120)
        return "A bean stew."

    def person_saves():
        assert fake_llm.wait_for_requests(1, timeout=120)  # the model is answering now
        draft = Dish.objects.get(pk=dish.pk).get_latest_revision_as_object()
        draft.notes = "Edited by a person while the model thought"
        draft.save_revision(user=superuser)
        saved.set()

    fake_llm.configure(reply=reply)
    thread = in_thread(person_saves)
    interaction = LLMService().run(action, dish, superuser)
    join_checked(thread)

    live = Dish.objects.get(pk=dish.pk)
    draft = live.get_latest_revision_as_object()
    assert draft.notes == "Edited by a person while the model thought"
    assert draft.summary == "A bean stew."
    assert (draft.name, draft.description) == ("Cassoulet", "Beans and duck.")
    assert (live.summary, live.notes) == ("", "")  # the live row is never changed
    interaction.refresh_from_db()
    assert interaction.rebased
    assert interaction.revision_id == live.latest_revision_id
