"""Image actions (issue 24 §1): a rendition goes to a vision model, the answer is written to
the image's own field, the previous value is kept and can be put back."""

from __future__ import annotations

import pytest
from django.core.exceptions import ValidationError

from tests.images import SVG, animated_gif, image_bytes, make_image
from wagtail_llm_actions.exceptions import LLMActionError
from wagtail_llm_actions.images.run import run_on_image
from wagtail_llm_actions.images.undo import UndoRefused, undo
from wagtail_llm_actions.models import InteractionOutcome, InteractionStatus, LLMInteraction

pytestmark = [pytest.mark.django_db, pytest.mark.usefixtures("fresh_renditions")]


@pytest.fixture
def vision_server_action(make_image_action, fake_llm, api_key_env):
    return make_image_action(
        model="openai/gpt-4o-mini", api_base=fake_llm.url, api_key_name=api_key_env
    )


def test_local_vision_describes_dimensions_colours_and_file_name(make_image_action):
    action = make_image_action()
    image = make_image(data=image_bytes(2048, 1024, (40, 80, 220)), description="old text")

    interaction = run_on_image(action, image)

    image.refresh_from_db()
    assert image.description == "A 1024×512 image, mostly blue: sunset beach"
    assert interaction.outcome == InteractionOutcome.WRITTEN
    assert interaction.status == InteractionStatus.SUCCESS
    assert interaction.previous_value == "old text"
    assert interaction.output_value == image.description
    assert interaction.revision is None and interaction.page is None
    assert interaction.content_object == image
    # The log keeps what was sent, with a summary of the image part, never its bytes.
    user = interaction.messages[-1]["content"]
    filename = image.file.name.rsplit("/", 1)[-1]  # sunset-beach.jpg, maybe with a suffix
    assert user[0] == {"type": "text", "text": f"Write alt text for {filename} (Sunset)."}
    summary = user[1]["image_url"]["url"]
    assert summary.startswith("[image/jpeg, ") and "1024×512" in summary
    assert "base64" not in str(interaction.messages)
    # Same image, same answer.
    assert run_on_image(action, image).response_text == interaction.response_text


def test_the_request_carries_the_rendition_as_image_content_never_the_larger_original(
    vision_server_action, fake_llm
):
    fake_llm.configure(reply="A field of coloured static.")
    original = image_bytes(3000, 2000, noise=True, fmt="PNG")
    image = make_image(name="static.png", data=original)

    run_on_image(vision_server_action, image)

    request = fake_llm.last_request
    assert len(request["images"]) == 1
    sent = request["images"][0]
    assert sent["media_type"] == "image/jpeg"
    assert 0 < sent["bytes"] < len(original)
    content = request["json"]["messages"][-1]["content"]
    filename = image.file.name.rsplit("/", 1)[-1]
    assert content[0] == {"type": "text", "text": f"Write alt text for {filename} (Sunset)."}
    assert content[1]["image_url"]["url"].startswith("data:image/jpeg;base64,")
    image.refresh_from_db()
    assert image.description == "A field of coloured static."


def test_webp_renditions_are_sent_as_webp(vision_server_action, fake_llm):
    vision_server_action.image_format = "webp"
    vision_server_action.image_size = 256
    vision_server_action.save()
    run_on_image(vision_server_action, make_image(data=image_bytes(1000, 500)))
    assert fake_llm.last_request["images"][0]["media_type"] == "image/webp"


def test_the_title_can_be_the_target(make_image_action):
    action = make_image_action(target_field="title", slug="image-title")
    image = make_image(name="red-barn.png", data=image_bytes(300, 300, (220, 30, 30), "PNG"))
    run_on_image(action, image)
    image.refresh_from_db()
    assert image.title == "A 300×300 image, mostly red: red barn"


def test_a_written_description_is_found_by_the_image_search(vision_server_action, fake_llm):
    """The field is written without Wagtail's save-time index update (it deadlocks between
    concurrent writes on PostgreSQL); the index is updated after the write instead."""
    from wagtail.images import get_image_model

    fake_llm.configure(reply="A zebra crossing at dusk.")
    image = make_image(name="street.png", data=image_bytes(60, 40, fmt="PNG"))
    assert not get_image_model().objects.search("zebra")
    run_on_image(vision_server_action, image)
    assert list(get_image_model().objects.search("zebra")) == [image]


def assert_nothing_written(image, fake_llm, message_part):
    stored = type(image).objects.filter(pk=image.pk).values_list("description", flat=True)
    assert list(stored) == [image.description]
    assert fake_llm.request_count == 0
    row = LLMInteraction.objects.latest("pk")
    assert row.status == InteractionStatus.ERROR
    assert message_part in row.error_message


@pytest.mark.parametrize(
    ("name", "data", "message"),
    [
        ("logo.svg", SVG, "is an SVG"),
        ("spinner.gif", animated_gif(), "is an animated GIF"),
    ],
)
def test_svg_and_animated_gifs_are_refused_saying_what_is_supported(
    vision_server_action, fake_llm, name, data, message
):
    extra = {"width": 10, "height": 10} if name.endswith(".svg") else {}
    image = make_image(name=name, data=data, description="kept", **extra)
    with pytest.raises(LLMActionError) as e:
        run_on_image(vision_server_action, image)
    assert message in str(e.value) and "Supported: JPEG, PNG, WebP" in str(e.value)
    assert_nothing_written(image, fake_llm, message)


def test_a_missing_file_is_refused(vision_server_action, fake_llm):
    image = make_image(description="kept")
    image.file.storage.delete(image.file.name)
    with pytest.raises(LLMActionError, match="missing or unreadable"):
        run_on_image(vision_server_action, image)
    assert_nothing_written(image, fake_llm, "missing or unreadable")


def test_a_rendition_over_the_providers_limit_is_refused(vision_server_action, fake_llm, settings):
    settings.WAGTAIL_LLM_ACTIONS = {**settings.WAGTAIL_LLM_ACTIONS, "MAX_IMAGE_BYTES": 500}
    image = make_image(data=image_bytes(800, 800, noise=True), description="kept")
    with pytest.raises(LLMActionError, match="MAX_IMAGE_BYTES"):
        run_on_image(vision_server_action, image)
    assert_nothing_written(image, fake_llm, "MAX_IMAGE_BYTES")


def test_a_model_without_vision_is_refused_at_save_and_at_run(make_image_action, fake_llm):
    action = make_image_action(model="openai/gpt-3.5-turbo")
    with pytest.raises(ValidationError) as e:
        action.full_clean()
    assert "cannot read images" in str(e.value.message_dict["model"])
    image = make_image(description="kept")
    with pytest.raises(LLMActionError, match="cannot read images"):
        run_on_image(action, image)
    assert_nothing_written(image, fake_llm, "cannot read images")


def test_models_litellm_cannot_judge_are_allowed_and_page_fields_are_not(make_image_action):
    action = make_image_action(model="openai/a-model-litellm-does-not-know")
    action.full_clean()  # unknown: allowed (a warning in the admin)
    assert action.vision_support() is None
    action.target_field = "summary"
    with pytest.raises(ValidationError) as e:
        action.full_clean()
    assert "Images have no text field “summary”" in str(e.value.message_dict["target_field"])


def test_undo_restores_the_previous_value(make_image_action):
    image = make_image(description="hand written")
    interaction = run_on_image(make_image_action(), image)

    undo(interaction)

    image.refresh_from_db()
    assert image.description == "hand written"
    interaction.refresh_from_db()
    assert interaction.outcome == InteractionOutcome.UNDONE
    with pytest.raises(UndoRefused, match="undone already"):
        undo(interaction)


def test_undo_refuses_when_the_field_was_edited_since(make_image_action):
    image = make_image(description="hand written")
    interaction = run_on_image(make_image_action(), image)
    image.refresh_from_db()
    image.description = "edited by a person"
    image.save()

    with pytest.raises(UndoRefused, match="changed since the answer was written"):
        undo(interaction)

    image.refresh_from_db()
    assert image.description == "edited by a person"


def test_page_runs_never_offer_an_image_action(make_image_action, post):
    assert not make_image_action().applies_to(post)


# -- the action form ---------------------------------------------------------------------------


def image_form_data(prompt, **overrides):
    from tests.test_action_form import action_data

    data = action_data(
        prompt,
        name="Alt text",
        slug="alt-text",
        page_types=[],
        source_kind="image",
        target_field="description",
        model="local/vision",
        image_size="512",
        image_format="webp",
    )
    data.update(overrides)
    return data


@pytest.fixture
def image_prompt(db):
    from wagtail_llm_actions.models import LLMPrompt

    return LLMPrompt.objects.create(name="Alt", slug="alt-form", template="Alt for {filename}.")


def test_the_form_saves_an_image_action_without_page_types(image_prompt, superuser):
    from django.test import Client
    from django.urls import reverse

    from tests.test_action_form import ADD_URL
    from wagtail_llm_actions.models import LLMAction

    client = Client()
    client.force_login(superuser)
    html = client.get(reverse(ADD_URL)).content.decode()
    assert 'name="source_kind"' in html and 'name="image_size"' in html
    assert '<option value="description">' in html  # the image fields are offered

    client.post(reverse(ADD_URL), image_form_data(image_prompt), follow=True)
    action = LLMAction.objects.get(slug="alt-text")
    assert (action.runs_on_images, action.image_size, action.image_format) == (True, 512, "webp")

    # A page action still needs its page types.
    response = client.post(
        reverse(ADD_URL), image_form_data(image_prompt, slug="p", source_kind="page")
    )
    assert "This field is required" in response.content.decode()
    assert not LLMAction.objects.filter(slug="p").exists()


def test_the_form_refuses_a_model_without_vision_and_warns_when_it_cannot_tell(
    image_prompt, superuser, monkeypatch
):
    from django.test import Client
    from django.urls import reverse

    from tests.test_action_form import ADD_URL
    from wagtail_llm_actions.models import LLMAction

    monkeypatch.setenv("OPENAI_API_KEY", "sk-test")
    client = Client()
    client.force_login(superuser)
    response = client.post(
        reverse(ADD_URL), image_form_data(image_prompt, model="openai/gpt-3.5-turbo")
    )
    assert "cannot read images" in response.content.decode()
    assert not LLMAction.objects.filter(slug="alt-text").exists()

    response = client.post(
        reverse(ADD_URL), image_form_data(image_prompt, model="openai/some-new-model"), follow=True
    )
    assert LLMAction.objects.filter(slug="alt-text").exists()
    assert "cannot tell whether openai/some-new-model reads images" in response.content.decode()


# -- a custom image model ----------------------------------------------------------------------


def test_a_custom_image_models_own_field_is_a_target(make_image_action, settings):
    from wagtail.images import get_image_model

    from tests.testapp.models import CaptionedImage
    from wagtail_llm_actions.models import image_text_fields

    settings.WAGTAILIMAGES_IMAGE_MODEL = "testapp.CaptionedImage"
    assert get_image_model() is CaptionedImage
    assert "caption" in image_text_fields() and "file" not in image_text_fields()
    action = make_image_action(target_field="caption", slug="caption")
    action.full_clean()
    image = make_image(name="blue-tile.png", data=image_bytes(200, 100, fmt="PNG"))
    assert isinstance(image, CaptionedImage)

    interaction = run_on_image(action, image)

    image.refresh_from_db()
    assert image.caption == "A 200×100 image, mostly blue: blue tile"
    assert interaction.content_object == image
    undo(interaction)
    image.refresh_from_db()
    assert image.caption == ""


def test_budgets_count_an_image_part_not_its_base64(make_image_action):
    from wagtail_llm_actions.estimates import IMAGE_PART_TOKENS, count_message_tokens
    from wagtail_llm_actions.images.files import picture
    from wagtail_llm_actions.images.messages import image_messages

    image = make_image(data=image_bytes(2000, 2000, noise=True))
    sent = picture(image, 1024, "jpeg")
    assert len(sent.data_url) > 100_000
    tokens = count_message_tokens(image_messages(make_image_action(), image, sent))
    assert IMAGE_PART_TOKENS < tokens < IMAGE_PART_TOKENS + 50


def test_local_vision_says_what_it_needs():
    from wagtail_llm_actions.providers.base import BadRequestError, CompletionRequest
    from wagtail_llm_actions.providers.local import LocalProvider

    request = CompletionRequest(
        model="local/vision", messages=[{"role": "user", "content": "Describe it."}]
    )
    with pytest.raises(BadRequestError, match="needs an image"):
        LocalProvider().complete(request)


def test_the_check_says_when_the_edit_view_button_cannot_appear(settings):
    from django.apps import apps

    from wagtail_llm_actions.checks import check_image_edit_button

    assert check_image_edit_button(None) == []  # the test site lists the app first
    names = [c.name for c in apps.get_app_configs() if c.name != "wagtail_llm_actions"]
    names.insert(names.index("wagtail.images") + 1, "wagtail_llm_actions")
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(
            apps, "get_app_configs", lambda: [type("C", (), {"name": n})() for n in names]
        )
        (message,) = check_image_edit_button(None)
    assert message.id == "wagtail_llm_actions.I002"


def test_a_fallback_model_without_vision_is_refused_too(make_image_action):
    action = make_image_action(fallback_models="openai/gpt-3.5-turbo")
    with pytest.raises(ValidationError) as e:
        action.full_clean()
    assert "cannot read images" in str(e.value.message_dict["fallback_models"])


def test_an_image_deleted_while_the_model_answered_keeps_the_answer_stored(
    make_image_action, monkeypatch
):
    from wagtail_llm_actions.images import run as image_run

    image = make_image()
    real = image_run.call

    def call_then_delete(*args, **kwargs):
        result = real(*args, **kwargs)
        type(image).objects.filter(pk=image.pk).delete()
        return result

    monkeypatch.setattr(image_run, "call", call_then_delete)
    with pytest.raises(LLMActionError, match="The image was deleted"):
        run_on_image(make_image_action(), image)
    row = LLMInteraction.objects.get()
    assert row.status == InteractionStatus.ANSWERED and row.response_text


def test_an_image_actions_prompt_may_use_the_images_variables_only(make_image_action, prompt):
    action = make_image_action()
    action.full_clean()  # {filename} and {title}
    action.prompt = prompt  # a page prompt: {body}
    with pytest.raises(ValidationError) as e:
        action.full_clean()
    assert "not {body}" in str(e.value.message_dict["prompt"])
