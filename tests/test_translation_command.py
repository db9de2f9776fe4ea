"""``run_llm_action <slug> --locale de --locale fr`` (issue 23 §1): drafts per page and
locale, and bad input refused with a clear error before anything is sent or written."""

from __future__ import annotations

from io import StringIO

import pytest
from django.core.management import CommandError, call_command
from wagtail.models import Page

from tests.translation_site import i18n

pytestmark = pytest.mark.django_db


def run(*args):
    out, err = StringIO(), StringIO()
    try:
        call_command("run_llm_action", *args, stdout=out, stderr=err)
    finally:
        run.out, run.err = out.getvalue(), err.getvalue()
    return run.out


def test_one_page_into_two_locales(translation_site, translate_action, fake_llm):
    fake_llm.configure(translate="reverse")
    recipe = translation_site["recipe"]
    out = run("translate", "--page", str(recipe.pk), "--locale", "de", "--locale", "fr")
    assert fake_llm.request_count == 2
    assert "→ German (de): new draft page" in out and "→ French (fr): new draft page" in out
    for code in ("de", "fr"):
        page = recipe.get_translation(translation_site[code])
        assert not page.live and page.has_unpublished_changes
    out = run("translate", "--page", str(recipe.pk), "--locale", "de")
    assert "unchanged, nothing sent" in out and fake_llm.request_count == 2


def test_all_translates_parents_before_children(translation_site, translate_action, fake_llm):
    fake_llm.configure(translate="reverse")
    orphan = translation_site["orphan"]
    run("translate", "--all", "--locale", "fr")
    # The untranslated section is translated before the page below it.
    assert orphan.get_translation_or_none(translation_site["fr"]) is not None
    from tests.testapp.models import RecipePage

    english = RecipePage.objects.filter(locale=translation_site["en"]).count()
    assert RecipePage.objects.filter(locale=translation_site["fr"]).count() == english


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--locale", "es"], "There is no locale “es”"),
        (["--locale", "de", "--locale", "en"], "is in English (en) already"),
        (["--locale", "de", "--force"], "--locale does not go with --force"),
        ([], "name locales with --locale"),
    ],
)
def test_bad_input_is_refused_before_anything_is_sent(
    translation_site, translate_action, fake_llm, args, message
):
    pages = Page.objects.count()
    with pytest.raises(CommandError, match=message.replace("(", r"\(").replace(")", r"\)")):
        run("translate", "--page", str(translation_site["recipe"].pk), *args)
    assert fake_llm.request_count == 0 and Page.objects.count() == pages


def test_a_parent_without_translation_is_named(translation_site, translate_action, fake_llm):
    orphan = translation_site["orphan"]
    with pytest.raises(CommandError, match="“Untranslated section” has no translation in French"):
        run("translate", "--page", str(orphan.pk), "--locale", "fr", "--locale", "de")
    assert fake_llm.request_count == 0
    assert orphan.get_translation_or_none(translation_site["fr"]) is None


def test_i18n_off_is_refused(translation_site, translate_action, fake_llm):
    with i18n(enabled=False), pytest.raises(CommandError, match="WAGTAIL_I18N_ENABLED"):
        run("translate", "--page", str(translation_site["recipe"].pk), "--locale", "de")


def test_a_dropped_tag_is_reported_and_the_command_fails(
    translation_site, translate_action, fake_llm
):
    fake_llm.configure(translate="drop_tag")
    recipe = translation_site["recipe"]
    with pytest.raises(CommandError, match="1 translation"):
        run("translate", "--page", str(recipe.pk), "--locale", "de")
    assert "not translated (the answer lost" in run.err and "the text it had is kept" in run.err
    assert fake_llm.request_count == 2


def test_dry_run_says_what_each_locale_will_send(translation_site, translate_action, fake_llm):
    from wagtail_llm_actions.translation.segments import segments

    fake_llm.configure(translate="reverse")
    recipe = translation_site["recipe"]
    run("translate", "--page", str(recipe.pk), "--locale", "de")
    pages = Page.objects.count()
    out = run(
        "translate", "--page", str(recipe.pk), "--locale", "de", "--locale", "fr", "--dry-run"
    )
    count = len(segments(recipe))
    assert f"→ German (de): 0 segment(s) to translate, {count} unchanged (skipped)" in out
    assert f"→ French (fr): {count} segment(s) to translate, 0 unchanged" in out
    assert "Dry run: nothing sent, nothing written." in out
    assert fake_llm.request_count == 1 and Page.objects.count() == pages


def test_descendants_translate_through_one_job(translation_site, translate_action, fake_llm):
    from wagtail_llm_actions.models import LLMJob

    fake_llm.configure(translate="reverse")
    home = translation_site["home"]
    out = run("translate", "--descendants", str(home.pk), "--locale", "fr")
    job = LLMJob.objects.get()
    assert job.kind == "command" and job.options["locales"] == ["fr"]
    # home, chili, recipe, section and the orphan below it: parents first, all translated
    assert job.items.count() == 5 and "Succeeded: 5" in out
    assert translation_site["orphan"].get_translation_or_none(translation_site["fr"])
    assert fake_llm.request_count == 5  # one request per page


def test_enqueue_hands_the_translation_job_to_the_workers(
    translation_site, translate_action, fake_llm, monkeypatch
):
    from wagtail_llm_actions import jobs
    from wagtail_llm_actions.models import LLMJob

    queued = []
    monkeypatch.setattr(jobs, "enqueue_job", lambda job, **kw: queued.append(job.pk))
    recipe = translation_site["recipe"]
    out = run(
        "translate", "--page", str(recipe.pk), "--locale", "de", "--locale", "fr", "--enqueue"
    )
    job = LLMJob.objects.get()
    assert queued == [job.pk] and "handed to the workers" in out
    assert sorted(job.items.values_list("payload__locale", flat=True)) == ["de", "fr"]
    assert fake_llm.request_count == 0
