"""The action form's "Translation" fields: whether the action translates pages, its style
instruction, glossary and do-not-translate terms, kept in the action's
:class:`~wagtail_llm_actions.models.LLMTranslationSettings` row (see
:mod:`wagtail_llm_actions.translation` for why a translation action is a kind of action)."""

from __future__ import annotations

from django import forms
from django.utils.translation import gettext_lazy as _

#: The form's translation fields -> the settings row's fields.
FIELDS = {
    "translation_style": "style",
    "translation_glossary": "glossary",
    "translation_do_not_translate": "do_not_translate",
}


class TranslationFieldsMixin(forms.Form):
    """Mixed into the action form; the panels show the fields under "Translation"."""

    translates = forms.BooleanField(
        label=_("Translates pages"),
        required=False,
        help_text=_(
            "Translate whole pages into other locales, as drafts (run_llm_action <slug> "
            "--locale de). The target field is not used."
        ),
    )
    translation_style = forms.CharField(
        label=_("Style instruction"),
        required=False,
        widget=forms.Textarea(attrs={"rows": 2}),
        help_text=_("How the translation should read, e.g. “Informal, address the reader as du”."),
    )
    translation_glossary = forms.CharField(
        label=_("Glossary"),
        required=False,
        widget=forms.Textarea(attrs={"rows": 4}),
        help_text=_(
            "One entry a line: locale: term = translation, e.g. “de: compost bin = Komposter”."
        ),
    )
    translation_do_not_translate = forms.CharField(
        label=_("Do not translate"),
        required=False,
        widget=forms.Textarea(attrs={"rows": 3}),
        help_text=_("Terms kept as they are (brand and product names), one a line."),
    )

    def load_translation(self) -> None:
        """Fill the fields from the action's settings row, if it has one."""
        instance = self.instance
        settings = getattr(instance, "translation", None) if instance.pk else None
        if settings is None:
            return
        self.initial.setdefault("translates", True)
        for name, field in FIELDS.items():
            self.initial.setdefault(name, getattr(settings, field))

    def clean_translation_glossary(self) -> str:
        from .translation.glossary import glossary_problems

        value = self.cleaned_data.get("translation_glossary") or ""
        problems = glossary_problems(value)
        if problems:
            raise forms.ValidationError(problems)
        return value

    def save_translation(self, action) -> None:
        """Create, update or delete the action's settings row as the form says."""
        from .models import LLMTranslationSettings

        if not self.cleaned_data.get("translates"):
            LLMTranslationSettings.objects.filter(action=action).delete()
            return
        LLMTranslationSettings.objects.update_or_create(
            action=action,
            defaults={field: self.cleaned_data.get(name) or "" for name, field in FIELDS.items()},
        )
