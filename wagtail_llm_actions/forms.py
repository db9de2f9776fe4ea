"""Admin forms: the action form checks paths and prompt variables against page types.

Provider fields (:data:`permissions.PROVIDER_FIELDS`) are disabled for users without the
*configure providers* permission: they see the current values, and Django ignores whatever
is posted for a disabled field, so a crafted POST cannot change them. A new action created
by such a user gets the defaults: ``WAGTAIL_LLM_ACTIONS["DEFAULT_MODEL"]``, no API base, no
key name, no extra parameters, the default timeout.
"""

from __future__ import annotations

from django import forms
from django.contrib.contenttypes.models import ContentType
from django.utils.text import format_lazy
from django.utils.translation import gettext_lazy as _
from wagtail.admin.forms import WagtailAdminModelForm
from wagtail.models import Page, get_page_models

from .conf import get_setting
from .permissions import PROVIDER_FIELDS, can_configure_providers


def page_type_choices():
    models = [m for m in get_page_models() if m is not Page]
    ids = [ct.pk for ct in ContentType.objects.get_for_models(*models).values()]
    return ContentType.objects.filter(pk__in=ids).order_by("app_label", "model")


class PageTypeChoiceField(forms.ModelMultipleChoiceField):
    def label_from_instance(self, obj: ContentType) -> str:
        model = obj.model_class()
        return str(model._meta.verbose_name).capitalize() if model else obj.model


class LLMActionForm(WagtailAdminModelForm):
    page_types = PageTypeChoiceField(
        queryset=ContentType.objects.none(),
        widget=forms.CheckboxSelectMultiple,
        label=_("Page types"),
        help_text=_("The page types this action can run on."),
    )

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.fields["page_types"].queryset = page_type_choices()
        self.apply_provider_permission()

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
                _("Only users who may configure LLM providers can change this."),
            ).strip()

    def _post_clean(self) -> None:
        # The model's clean() checks paths against the *saved* page types; here the page types
        # being chosen are checked instead, once.
        self.instance._page_types_checked_by_form = True
        super()._post_clean()
        page_types = self.cleaned_data.get("page_types")
        if not page_types:
            return
        page_models = [ct.model_class() for ct in page_types if ct.model_class()]
        errors = self.instance.validate_for_page_models(page_models)
        for field, messages in errors.items():
            for message in dict.fromkeys(messages):
                if field in self.fields:
                    self.add_error(field, message)
                else:
                    self.add_error(None, message)
