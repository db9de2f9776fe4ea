"""Provenance of generated fields (issue 22 §2): which text a model wrote, whether a person
reviewed it, what was published; the site's label and JSON-LD from the template tags."""

from __future__ import annotations

import json

import pytest
from django.template import Context, Template
from django.test import override_settings

from wagtail_llm_actions.models import InteractionOutcome, LLMInteraction
from wagtail_llm_actions.provenance import field_provenance, similarity
from wagtail_llm_actions.review import discard
from wagtail_llm_actions.service import LLMService

pytestmark = pytest.mark.django_db


def newest(page):
    return type(page).objects.get(pk=page.pk).get_latest_revision_as_object()


def live(page):
    return type(page).objects.get(pk=page.pk)


def generate(action, page, user):
    interaction = LLMService().run(action, page, user)
    assert interaction.status == "success", interaction.error_message
    return interaction


def save_as(page, user, **changes):
    obj = newest(page)
    for name, value in changes.items():
        setattr(obj, name, value)
    return obj.save_revision(user=user)


def test_a_field_no_action_wrote_is_human(post):
    prov = field_provenance(newest(post), "summary")
    assert prov.status == "human" and prov.interaction is None


def test_a_bulk_draft_is_generated_and_not_reviewed(action, post, superuser):
    interaction = generate(action, post, superuser)
    prov = field_provenance(newest(post), "summary")
    assert prov.status == "generated"
    assert prov.interaction.pk == interaction.pk
    assert prov.similarity == 1.0 and not prov.edited
    assert prov.reviewed_by is None
    assert prov.action_name == "Generate summary" and prov.model == "local/extractive"


def test_a_person_saving_the_generated_text_reviews_it(action, post, superuser, editor):
    generate(action, post, superuser)
    save_as(post, editor, title="A new title")
    prov = field_provenance(newest(post), "summary")
    assert prov.status == "generated_reviewed"
    assert prov.reviewed_by == editor and prov.reviewed_at is not None


def test_light_edits_keep_it_generated_and_say_how_much(action, post, superuser, editor):
    interaction = generate(action, post, superuser)
    save_as(post, editor, summary=interaction.output_value + " Edited.")
    prov = field_provenance(newest(post), "summary")
    assert prov.generated and prov.edited
    assert 0.5 < prov.similarity < 1.0


def test_text_rewritten_by_a_person_is_human(action, post, superuser, editor):
    generate(action, post, superuser)
    save_as(post, editor, summary="Worms, written by hand, about the compost heap.")
    prov = field_provenance(newest(post), "summary")
    assert prov.status == "human" and not prov.discarded


def test_a_discarded_answer_is_human(action, post, superuser):
    interaction = generate(action, post, superuser)
    discard(LLMInteraction.objects.get(pk=interaction.pk), superuser)
    interaction.refresh_from_db()
    assert interaction.outcome == InteractionOutcome.DISCARDED
    prov = field_provenance(newest(post), "summary")
    assert prov.status == "human"


@override_settings(WAGTAIL_LLM_ACTIONS={"PROVENANCE": {"REVIEWED": "edited"}})
def test_a_site_can_ask_for_edits_before_text_counts_as_reviewed(action, post, superuser, editor):
    interaction = generate(action, post, superuser)
    save_as(post, editor, title="Only the title changed")
    assert field_provenance(newest(post), "summary").status == "generated"
    text = interaction.output_value
    save_as(post, editor, summary=text[: int(len(text) * 0.8)])
    prov = field_provenance(newest(post), "summary")
    assert prov.status == "generated_reviewed" and prov.reviewed_by == editor


def test_the_live_page_is_human_until_the_generated_draft_is_published(
    action, post, superuser, editor
):
    generate(action, post, superuser)
    assert field_provenance(live(post), "summary").status == "human"
    save_as(post, editor).publish(user=superuser)
    prov = field_provenance(live(post), "summary")
    assert prov.status == "generated_reviewed"
    assert prov.published_revision_id == live(post).live_revision_id


def test_a_published_generated_text_stays_labelled_while_a_newer_draft_waits(
    action, post, superuser, editor
):
    first = generate(action, post, superuser)
    save_as(post, editor).publish(user=superuser)
    save_as(post, editor, body=post.body)  # nothing new to say
    action.prompt.template = "Say something else about {title}: {body}"
    action.prompt.save()
    generate(action, post, superuser)
    prov = field_provenance(live(post), "summary")
    assert prov.generated and prov.interaction.pk == first.pk


def test_structured_runs_count_for_each_field_they_wrote(action, post, superuser, make_post):
    from tests.interactions_factory import make_interactions

    save_as(post, superuser, summary="Worms like it damp.")
    page = newest(post)
    make_interactions(
        1,
        action=action,
        page=post,
        user=superuser,
        target_field="",
        output_value="",
        output_values={"summary": "Worms like it damp.", "search_description": "Worms."},
        revision=post.latest_revision,
    )
    assert field_provenance(page, "summary").generated
    other = make_post(title="Another")
    assert field_provenance(newest(other), "summary").status == "human"


def test_the_template_tag_labels_the_field_and_the_jsonld_discloses_it(
    action, post, superuser, editor
):
    generate(action, post, superuser)
    save_as(post, editor).publish(user=superuser)
    page = live(post)
    page.title = "</script><script>alert(1)</script>"
    html = Template(
        '{% load llm_actions_tags %}[{% llm_provenance page "summary" %}]'
        '[{% llm_provenance page "intro" %}]{% llm_provenance_jsonld page %}'
    ).render(Context({"page": page}))
    assert "[generated_reviewed][human]" in html
    assert html.count("</script>") == 1  # the title cannot end the element
    data = json.loads(html.split('<script type="application/ld+json">')[1].split("</script>")[0])
    assert data["@type"] == "WebPage"
    [part] = data["hasPart"]
    assert part["name"] == "summary"
    assert part["digitalSourceType"].endswith("compositeWithTrainedAlgorithmicMedia")
    assert part["sdPublisher"]["name"] == "local/extractive"


def test_provenance_costs_a_fixed_number_of_queries(
    action, post, superuser, editor, django_assert_max_num_queries
):
    generate(action, post, superuser)
    for n in range(6):
        save_as(post, editor, title=f"Title {n}")
    page = newest(post)
    with django_assert_max_num_queries(3):
        field_provenance(page, "summary")


def test_similarity_reads_characters_not_words():
    assert similarity("Worms like it damp.", "Worms like it damp.") == 1.0
    assert similarity("Worms like it damp.", "Worms  like it\ndamp.") == 1.0
    assert 0.8 < similarity("Worms like it damp.", "Worms like it wet.") < 1.0
    assert similarity("Worms like it damp.", "") == 0.0
