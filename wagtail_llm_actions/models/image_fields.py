"""What an action that runs on images sets (issue 24 §1): that its source is the image itself,
the rendition sent, and the checks of its target field and model."""

from __future__ import annotations

from django.core.validators import MaxValueValidator, MinValueValidator
from django.db import models
from django.utils.translation import gettext
from django.utils.translation import gettext_lazy as _

#: The long side of the rendition sent when an action sets none.
DEFAULT_IMAGE_SIZE = 1024

#: Image fields an action never writes (the file and what Wagtail derives from it).
NOT_WRITABLE = frozenset(
    {"file", "width", "height", "file_size", "file_hash", "focal_point_x", "focal_point_y"}
    | {"focal_point_width", "focal_point_height", "collection", "uploaded_by_user"}
)


#: The prompt variables of an action writing the alt text of a page's images: an image
#: action's, with the text around the image and the page's title.
IMAGE_BLOCK_VARIABLES = frozenset({"surrounding_text", "page_title"})

#: The prompt variables of an image action besides the image model's text fields (see
#: ``images.messages.prompt_values``).
IMAGE_VARIABLES = frozenset(
    {"title", "filename", "source", "width", "height", "context", "url", "locale"}
)


class SourceKind(models.TextChoices):
    PAGE = "page", _("Page content")
    IMAGE = "image", _("The image itself (alt text, descriptions)")
    IMAGE_BLOCKS = "image_blocks", _("Images in a page's content (their alt text, in a draft)")


class ImageFormat(models.TextChoices):
    JPEG = "jpeg", _("JPEG")
    WEBP = "webp", _("WebP")


def image_text_fields(model: type | None = None) -> list[str]:
    """The text fields of the image model (``get_image_model()``) an action can write."""
    if model is None:
        from wagtail.images import get_image_model

        model = get_image_model()
    names = []
    for field in model._meta.get_fields():
        if not getattr(field, "concrete", False) or field.name in NOT_WRITABLE:
            continue
        if isinstance(field, models.CharField | models.TextField) and field.editable:
            names.append(field.name)
    return names


class ImageSourceFields(models.Model):
    """The image half of an action: what it runs on and the rendition it sends."""

    source_kind = models.CharField(
        _("runs on"),
        max_length=20,
        choices=SourceKind.choices,
        default=SourceKind.PAGE,
        help_text=_(
            "Pages (the source field below); the image itself: a rendition is sent to a "
            "model that can read images, and the answer is written to the image's own field "
            "(title, description or a custom field), not as a draft; or the images in a "
            "page's content: each image block of the target StreamField without alt text "
            "gets one, from the image and the text around it, in a draft."
        ),
    )
    image_size = models.PositiveIntegerField(
        _("image size (pixels)"),
        default=DEFAULT_IMAGE_SIZE,
        validators=[MinValueValidator(64), MaxValueValidator(4096)],
        help_text=_("Image actions: the long side of the rendition sent to the model."),
    )
    image_format = models.CharField(
        _("image format"),
        max_length=10,
        choices=ImageFormat.choices,
        default=ImageFormat.JPEG,
        help_text=_("Image actions: the format of the rendition sent to the model."),
    )

    class Meta:
        abstract = True

    @property
    def runs_on_images(self) -> bool:
        return self.source_kind == SourceKind.IMAGE

    @property
    def runs_on_image_blocks(self) -> bool:
        """Whether the action writes the alt text of a page's ``ImageBlock``s (a page
        action: its target is the StreamField holding them)."""
        return self.source_kind == SourceKind.IMAGE_BLOCKS

    def image_problems(self) -> dict[str, list[str]]:
        """Why an image action cannot be saved, by field (nothing for a page action)."""
        errors: dict[str, list[str]] = {}
        upload = self.trigger == "on_image_upload"
        if self.runs_on_image_blocks:
            return self.image_block_problems(upload)
        if not self.runs_on_images:
            if upload:
                errors["trigger"] = [
                    gettext("“When an image is uploaded” is for actions that run on images.")
                ]
            return errors
        if self.trigger not in ("manual", "on_image_upload") or self.trigger_schedule.strip():
            errors["trigger"] = [
                gettext(
                    "An action that runs on images runs by itself only when an image is "
                    "uploaded: choose that or “Manually only”, and clear the schedule."
                )
            ]
        if self.output_fields not in (None, "", {}):
            errors["output_fields"] = [
                gettext("An action that runs on images writes one field: clear output fields.")
            ]
        fields = image_text_fields()
        errors.update(self.image_prompt_problems(fields))
        if self.target_field and self.target_field not in fields:
            errors.setdefault("target_field", []).append(
                gettext("Images have no text field “%(field)s”; choose one of: %(fields)s.")
                % {"field": self.target_field, "fields": ", ".join(fields)}
            )
        from ..providers.vision import vision_support

        prefix = (self.model or "").partition("/")[0]
        for name in self.fallback_model_list:
            # A fallback gets the API base only with the main model's provider (as at call).
            base = self.api_base or "" if name.partition("/")[0] == prefix else ""
            if vision_support(name, base) is False:
                errors.setdefault("fallback_models", []).append(
                    gettext("%(model)s cannot read images (LiteLLM's model list says so).")
                    % {"model": name}
                )
        if self.vision_support() is False:
            errors.setdefault("model", []).append(
                gettext(
                    "%(model)s cannot read images (LiteLLM's model list says so). Choose a "
                    "model with vision, e.g. openai/gpt-4o-mini, or local/vision offline."
                )
                % {"model": self.model}
            )
        return errors

    def image_block_problems(self, upload: bool) -> dict[str, list[str]]:
        """Why an action writing the alt text of a page's images cannot be saved."""
        errors = self.image_prompt_problems(image_text_fields(), IMAGE_BLOCK_VARIABLES)
        if upload:
            errors["trigger"] = [
                gettext("“When an image is uploaded” is for actions that run on images.")
            ]
        if self.is_structured or self.output_fields not in (None, "", {}):
            errors["output_fields"] = [
                gettext("An action writing images' alt text writes one field: clear output fields.")
            ]
        if self.vision_support() is False:
            errors.setdefault("model", []).append(
                gettext(
                    "%(model)s cannot read images (LiteLLM's model list says so). Choose a "
                    "model with vision, e.g. openai/gpt-4o-mini, or local/vision offline."
                )
                % {"model": self.model}
            )
        return errors

    def image_prompt_problems(
        self, fields: list[str], extra: frozenset[str] = frozenset()
    ) -> dict[str, list[str]]:
        """The prompt may use the image's variables only (a page's paths have no value)."""
        from ..templating import TemplateSyntaxError, template_variables

        prompt = self.prompt if self.prompt_id or "prompt" in self._state.fields_cache else None
        if prompt is None:
            return {}
        try:
            names = template_variables(prompt.template)
        except TemplateSyntaxError:
            return {}  # said by the prompt's own checks
        known = {*IMAGE_VARIABLES, *fields, *extra}
        unknown = [name for name in names if name not in known]
        if not unknown:
            return {}
        return {
            "prompt": [
                gettext(
                    "An action that runs on images can use %(known)s in its prompt, not %(names)s."
                )
                % {
                    "known": ", ".join(f"{{{n}}}" for n in sorted(known)),
                    "names": ", ".join(f"{{{n}}}" for n in unknown),
                }
            ]
        }

    def vision_support(self) -> bool | None:
        """Whether the action's model reads images: True, False, or None when unknown."""
        from ..providers.vision import vision_support

        return vision_support((self.model or "").strip(), self.api_base or "")
