"""Admin forms: the action form checks paths and prompt variables against page types.

Provider fields (:data:`permissions.PROVIDER_FIELDS`) are disabled for users without the
*configure providers* permission: they see the current values, and Django ignores whatever
is posted for a disabled field, so a crafted POST cannot change them. A new action created
by such a user gets the defaults: ``WAGTAIL_LLM_ACTIONS["DEFAULT_MODEL"]``, no API base, no
key name, no extra parameters, the default timeout.

It also guides: source paths and target fields of the chosen page types as choices, the
model as a combobox of the model strings LiteLLM knows (any string is still accepted).
"""

from __future__ import annotations

import json

from django import forms
from django.contrib.contenttypes.models import ContentType
from django.utils.text import format_lazy
from django.utils.translation import gettext_lazy as _
from wagtail.admin.forms import WagtailAdminModelForm
from wagtail.admin.panels import HelpPanel
from wagtail.models import Page, get_page_models

from .conf import get_setting, with_feature
from .permissions import PROVIDER_FIELDS, can_configure_providers
from .translation_form import TranslationFieldsMixin


def page_type_choices():
    models = [m for m in get_page_models() if m is not Page]
    ids = [ct.pk for ct in ContentType.objects.get_for_models(*models).values()]
    return ContentType.objects.filter(pk__in=ids).order_by("app_label", "model")


def snippet_type_choices():
    """Content types of the site's snippet models (not this app's own)."""
    from .snippets import snippet_models

    models = snippet_models()
    ids = [ct.pk for ct in ContentType.objects.get_for_models(*models).values()] if models else []
    return ContentType.objects.filter(pk__in=ids).order_by("app_label", "model")


class PageTypeChoiceField(forms.ModelMultipleChoiceField):
    def label_from_instance(self, obj: ContentType) -> str:
        model = obj.model_class()
        return str(model._meta.verbose_name).capitalize() if model else obj.model


# -- guided inputs ----------------------------------------------------------------------------


class ComboboxInput(forms.TextInput):
    """A text input with suggestions (``<input list>`` + ``<datalist>``); any value is allowed."""

    template_name = "wagtail_llm_actions/widgets/combobox.html"

    def __init__(self, attrs=None, options=()):
        super().__init__(attrs)
        self.options = list(options)

    def get_context(self, name, value, attrs):
        context = super().get_context(name, value, attrs)
        list_id = f"{context['widget']['attrs'].get('id') or name}-suggestions"
        context["widget"]["attrs"]["list"] = list_id
        context["widget"]["attrs"].setdefault("autocomplete", "off")
        context["widget"]["list_id"] = list_id
        context["widget"]["options"] = self.options
        return context


class FieldChoiceSelect(forms.Select):
    """A select of field names whose current value stays selectable when it is not offered."""

    def get_context(self, name, value, attrs):
        values = {str(choice[0]) for choice in self.choices}
        if value and str(value) not in values:
            self.choices = [
                *self.choices,
                (value, _("%(name)s (not a field of the chosen page types)") % {"name": value}),
            ]
        return super().get_context(name, value, attrs)


def page_type_fields(content_types) -> dict[str, dict]:
    """For each page type: the source paths and target fields the action form offers."""
    from .extraction import describe_paths, describe_targets
    from .panels import panel_restrictions

    data = {}
    for content_type in content_types:
        model = content_type.model_class()
        if model is None:
            continue
        restrictions = panel_restrictions(model)
        data[str(content_type.pk)] = {
            "label": str(model._meta.verbose_name).capitalize(),
            "sources": describe_paths(model),
            "targets": describe_targets(model),
            "restricted": {
                field: sorted(allowed) for field, allowed in restrictions.items() if allowed
            },
        }
    return data


def combined_choices(data: dict[str, dict], chosen: list[str]) -> tuple[list[str], list]:
    """Source paths and target fields valid for every chosen page type (all, if none chosen)."""
    keys = [key for key in chosen if key in data] or list(data)
    if not keys:
        return [], []
    sources = list(data[keys[0]]["sources"])
    targets = [tuple(t) for t in data[keys[0]]["targets"]]
    for key in keys[1:]:
        if chosen:
            other_sources = set(data[key]["sources"])
            other_targets = {t[0] for t in data[key]["targets"]}
            sources = [p for p in sources if p in other_sources]
            targets = [t for t in targets if t[0] in other_targets]
        else:
            sources += [p for p in data[key]["sources"] if p not in sources]
            names = {t[0] for t in targets}
            targets += [tuple(t) for t in data[key]["targets"] if t[0] not in names]
    return sources, targets


def image_target_choices() -> list:
    """The image model's text fields, for actions that run on images (an option group)."""
    from .models import image_text_fields

    names = image_text_fields()
    return [(_("Image fields (actions that run on images)"), [(n, n) for n in names])]


def image_block_target_choices(page_types) -> list:
    """The StreamFields of ``page_types`` that hold image blocks (an option group: actions
    writing the alt text of a page's images)."""
    from .extraction.image_blocks import holds_image_blocks

    names: list[str] = []
    for content_type in page_types:
        model = content_type.model_class()
        for field in model._meta.concrete_fields if model else []:
            if field.name not in names and holds_image_blocks(model, field.name):
                names.append(field.name)
    if not names:
        return []
    return [(_("Images in a page's content (their alt text)"), [(n, n) for n in names])]


class LLMActionForm(TranslationFieldsMixin, WagtailAdminModelForm):
    page_types = PageTypeChoiceField(
        queryset=ContentType.objects.none(),
        widget=forms.CheckboxSelectMultiple,
        label=_("Page types"),
        help_text=_("The page types this action can run on."),
    )

    snippet_types = PageTypeChoiceField(
        queryset=ContentType.objects.none(),
        widget=forms.CheckboxSelectMultiple,
        required=False,
        label=_("Snippet types"),
        help_text=_(
            "The snippet models this action can run on. Answers are saved as a new revision "
            "of snippets that keep revisions; others need “write snippets directly”."
        ),
    )

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.fields["page_types"].queryset = page_type_choices()
        self.fields["page_types"].required = False  # checked in _post_clean: pages only
        self.fields["snippet_types"].queryset = snippet_type_choices()
        self._offer_choices()
        self.apply_provider_permission()
        if "long_content" in self.fields:
            # Forms (and scripts) that predate the choice keep today's behaviour: truncate.
            self.fields["long_content"].required = False
        if "candidates" in self.fields:
            self.fields["candidates"].required = False
        if "cut_answers" in self.fields:
            self.fields["cut_answers"].required = False
        for name in ("trigger", "trigger_delay"):  # forms that predate triggers: manual
            if name in self.fields:
                self.fields[name].required = False
        for name in ("source_kind", "image_size", "image_format"):  # older forms: pages
            if name in self.fields:
                self.fields[name].required = False
        self.load_translation()

    def save(self, commit: bool = True):
        instance = super().save(commit=commit)
        if commit:
            self.save_translation(instance)
        else:
            save_m2m = self.save_m2m

            def save_all() -> None:
                save_m2m()
                self.save_translation(instance)

            self.save_m2m = save_all
        return instance

    def apply_provider_permission(self) -> None:
        """Prefill new actions with the default model; lock provider fields without the right.

        Disabled fields show their value and ignore posted data: a crafted POST changes nothing.
        """
        if self.instance._state.adding and not self.initial.get("model"):
            self.initial["model"] = get_setting("DEFAULT_MODEL")
        if can_configure_providers(self.for_user):
            return
        for name in PROVIDER_FIELDS:
            field = self.fields.get(name)
            if field is None:
                continue
            field.disabled = True
            field.help_text = format_lazy(
                "{} {}",
                field.help_text,
                _("Only users who may configure model providers can change this."),
            ).strip()

    def _chosen_page_types(self, name: str = "page_types") -> list[str]:
        """The content types chosen in ``name`` (page types, or ``snippet_types``)."""
        if self.is_bound:
            key = self.add_prefix(name)
            if hasattr(self.data, "getlist"):
                return [str(v) for v in self.data.getlist(key)]
            value = self.data.get(key) or []
            return [str(v) for v in (value if isinstance(value, list | tuple) else [value])]
        if self.instance.pk:
            chosen = getattr(self.instance, name).values_list("pk", flat=True)
            return [str(pk) for pk in chosen]
        return [str(getattr(v, "pk", v)) for v in self.initial.get(name) or []]

    def _offer_choices(self) -> None:
        """Source paths and target fields of the chosen page types, the known model strings.

        The page's script (``llm-action-form``) updates the first two when page types change.
        """
        from .model_choices import suggested_models

        self.page_type_data = page_type_fields(self.fields["page_types"].queryset)
        chosen = self._chosen_page_types()
        snippets = (
            self._chosen_page_types("snippet_types") if "snippet_types" in self.fields else []
        )
        data = self.page_type_data
        if snippets:  # the chosen snippet models' fields too (the script knows page types only)
            data = {**data, **page_type_fields(ContentType.objects.filter(pk__in=snippets))}
        sources, targets = combined_choices(data, chosen + snippets)
        source = self.fields.get("source_field")
        if source is not None:
            source.widget = ComboboxInput(attrs=source.widget.attrs, options=sources)
        target = self.fields.get("target_field")
        if target is not None:
            target.widget = FieldChoiceSelect(
                attrs=target.widget.attrs,
                choices=[("", _("Choose a field"))]
                + list(targets)
                + image_target_choices()
                + image_block_target_choices(self.fields["page_types"].queryset),
            )
        model = self.fields.get("model")
        if model is not None:
            model.widget = ComboboxInput(attrs=model.widget.attrs, options=suggested_models())

    def clean_long_content(self) -> str:
        from .models import LongContent

        return self.cleaned_data.get("long_content") or LongContent.TRUNCATE

    def clean_cut_answers(self) -> str:
        from .models import CutAnswers

        return self.cleaned_data.get("cut_answers") or CutAnswers.REFUSE

    def clean_trigger(self) -> str:
        from .models import ActionTrigger

        return self.cleaned_data.get("trigger") or ActionTrigger.MANUAL

    def clean_trigger_delay(self) -> int:
        from .models import DEFAULT_TRIGGER_DELAY

        value = self.cleaned_data.get("trigger_delay")
        return DEFAULT_TRIGGER_DELAY if value in (None, "") else value

    def clean_source_kind(self) -> str:
        return self.cleaned_data.get("source_kind") or "page"

    def clean_image_size(self) -> int:
        from .models import DEFAULT_IMAGE_SIZE

        return self.cleaned_data.get("image_size") or DEFAULT_IMAGE_SIZE

    def clean_image_format(self) -> str:
        return self.cleaned_data.get("image_format") or "jpeg"

    def clean_output_fields(self):
        value = self.cleaned_data.get("output_fields")
        return {} if value in (None, "") else value

    def clean_candidates(self):
        value = self.cleaned_data.get("candidates")
        return 1 if value in (None, "") else value

    def _post_clean(self) -> None:
        # The model's clean() checks paths against the *saved* page types; here the page types
        # being chosen are checked instead, once.
        self.instance._page_types_checked_by_form = True
        self.instance._translates = bool(self.cleaned_data.get("translates"))
        super()._post_clean()
        page_types = self.cleaned_data.get("page_types")
        if "page_types" in self.cleaned_data:  # a trigger needs page types to run on
            reported = self.instance.trigger_problems(None)  # by the model's clean()
            for field, messages in self.instance.trigger_problems(len(page_types or [])).items():
                for message in messages:
                    if message not in reported.get(field, []):
                        self.add_error(field if field in self.fields else None, message)
        if self.instance.runs_on_images:
            return  # image fields and the model are checked by the model's clean()
        snippet_types = self.cleaned_data.get("snippet_types") or []
        if not page_types and not snippet_types:
            if "page_types" in self.cleaned_data and "page_types" not in self.errors:
                self.add_error("page_types", self.fields["page_types"].error_messages["required"])
            return
        snippet_models = [ct.model_class() for ct in snippet_types if ct.model_class()]
        for message in self.instance.snippet_type_problems(snippet_models):
            self.add_error("snippet_types", message)
        page_models = [ct.model_class() for ct in page_types or [] if ct.model_class()]
        page_models += snippet_models
        errors = self.instance.validate_for_page_models(page_models)
        for field, messages in errors.items():
            for message in dict.fromkeys(messages):
                if field in self.fields:
                    self.add_error(field, message)
                else:
                    self.add_error(None, message)


class ActionPlacementPanel(HelpPanel):
    """Where the action will appear: fields, page types, editor, bulk and the command.

    Drawn from the form as it is, and kept up to date by the ``llm-action-form`` script as
    the page types, target field and slug change. Its data also feeds the script's choices.
    """

    def __init__(self, **kwargs):
        kwargs.setdefault("template", "wagtail_llm_actions/admin/action_placement.html")
        kwargs.setdefault("heading", _("Where it appears"))
        super().__init__(**kwargs)

    class BoundPanel(HelpPanel.BoundPanel):
        def get_context_data(self, parent_context=None):
            context = super().get_context_data(parent_context)
            form = self.form
            data = getattr(form, "page_type_data", {})
            chosen = form._chosen_page_types() if hasattr(form, "_chosen_page_types") else []
            target = form["target_field"].value() if "target_field" in form.fields else ""
            slug = form["slug"].value() if "slug" in form.fields else ""
            context.update(
                page_type_data=json.dumps(data),
                chosen_labels=[data[key]["label"] for key in chosen if key in data],
                target=target or "",
                slug=slug or "",
                bulk_action_label=with_feature(_("Run %(feature)s action")),
            )
            return context


class LLMPipelineStepForm(WagtailAdminModelForm):
    """One step of the pipeline form: an action, or a prompt, model and parameters of its own.

    The step's provider fields (model, API base, key name) follow the action form's rule:
    disabled for users without the *configure providers* permission (posted values are
    ignored; a new step gets ``DEFAULT_MODEL``). The model is offered as a combobox.
    """

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        from .model_choices import suggested_models

        if "model" in self.fields:
            field = self.fields["model"]
            field.widget = ComboboxInput(attrs=field.widget.attrs, options=suggested_models())
            if not self.instance.model:
                self.initial["model"] = get_setting("DEFAULT_MODEL")
        self._offer_field_choices()
        for name in ("action", "output_mode"):
            if name in self.fields:
                # A step using an action (or a script posting only name and action) needs
                # neither.
                self.fields[name].required = False
        if not can_configure_providers(self.for_user):
            for name in PROVIDER_FIELDS:
                field = self.fields.get(name)
                if field is None:
                    continue
                field.disabled = True
                field.help_text = format_lazy(
                    "{} {}",
                    field.help_text,
                    _("Only users who may configure model providers can change this."),
                ).strip()

    def _offer_field_choices(self) -> None:
        """As the action form does: source paths to pick from and target fields to choose,
        those of the page types pipelines may run on (any value stays allowed)."""
        if "source_field" not in self.fields and "target_field" not in self.fields:
            return
        data = page_type_fields(page_type_choices())
        chosen = []
        if getattr(self.instance, "pipeline_id", None):  # the saved pipeline's page types
            chosen = [
                str(pk) for pk in self.instance.pipeline.page_types.values_list("pk", flat=True)
            ]
        sources, targets = combined_choices(data, chosen)
        source = self.fields.get("source_field")
        if source is not None:
            source.widget = ComboboxInput(attrs=source.widget.attrs, options=sources)
        target = self.fields.get("target_field")
        if target is not None:
            target.widget = FieldChoiceSelect(
                attrs=target.widget.attrs,
                choices=[("", _("Choose a field"))] + list(targets) + image_target_choices(),
            )

    def clean_output_mode(self) -> str:
        from .models import OutputMode

        return self.cleaned_data.get("output_mode") or OutputMode.TEXT


class LLMPipelineForm(WagtailAdminModelForm):
    """Refuses steps that use a missing, their own or a later step's answer (``{steps.x}``),
    duplicate step names, two steps writing one field, and steps with their own prompt whose
    variables or fields the pipeline's page types lack (or with no page types chosen)."""

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        if "page_types" in self.fields:
            self.fields["page_types"] = PageTypeChoiceField(
                queryset=page_type_choices(),
                widget=forms.CheckboxSelectMultiple,
                required=False,
                label=_("Page types"),
                help_text=self.fields["page_types"].help_text,
            )

    def clean(self):
        cleaned = super().clean()
        formset = self.formsets.get("steps") if hasattr(self, "formsets") else None
        if formset is None or not all(form.is_valid() for form in formset.forms):
            return cleaned
        from .pipelines import StepSpec, inline_step_problems, validate_steps

        live = [
            form
            for form in formset.forms
            if form.cleaned_data and not form.cleaned_data.get("DELETE")
        ]
        live.sort(key=lambda form: form.cleaned_data.get("ORDER") or 0)
        specs = [
            StepSpec(
                form.cleaned_data.get("name") or "",
                form.instance.as_action(),
                bool(form.cleaned_data.get("writes")),
            )
            for form in live
        ]
        errors = validate_steps(specs)
        page_types = list(cleaned.get("page_types") or [])
        page_models = [ct.model_class() for ct in page_types if ct.model_class()]
        inline = [index for index, spec in enumerate(specs) if spec.action.pk is None]
        if inline and not page_types and "page_types" in self.fields:
            self.add_error(
                "page_types",
                _(
                    "Choose the page types the pipeline runs on: its steps with their own prompt "
                    "are checked against them."
                ),
            )
        for index, spec in enumerate(specs):
            problems = inline_step_problems(spec, page_models)
            if spec.action.pk is not None and page_types:
                type_ids = set(spec.action.page_types.values_list("pk", flat=True))
                problems += [
                    _("The action “%(action)s” does not apply to %(type)s pages.")
                    % {"action": spec.action.name, "type": ct.model_class()._meta.verbose_name}
                    for ct in page_types
                    if ct.pk not in type_ids and ct.model_class()
                ]
            if problems:
                errors.setdefault(index, []).extend(problems)
        for index, messages in sorted(errors.items()):
            for message in messages:
                live[index].add_error(None, message)
                self.add_error(
                    None,
                    _("Step “%(step)s”: %(error)s") % {"step": specs[index].name, "error": message},
                )
        return cleaned
