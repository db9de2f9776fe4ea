""" "Translate into…" from the page editor's action menu (issue 23 §1): choose the translation
action and the locales, then the translation is queued as the editor's other runs are (no
model call inside the request) and the browser follows its progress. When it ends,
:func:`translate_done` says what was saved, with a link to each translation's editor."""

from __future__ import annotations

from django.conf import settings
from django.contrib.contenttypes.models import ContentType
from django.core.exceptions import PermissionDenied
from django.shortcuts import get_object_or_404, redirect
from django.urls import reverse
from django.utils.translation import gettext as _
from django.views.generic import TemplateView
from wagtail.admin import messages
from wagtail.admin.views.generic.base import WagtailAdminTemplateMixin
from wagtail.models import Locale, Page

from .. import queued_runs
from ..exceptions import LLMActionError
from ..models import LLMAction
from ..permissions import can_edit_page
from ..translation.estimate import estimate
from ..translation.run import check, language_name, locales
from .queued_runs import enqueue


def translation_actions(page: Page):
    """The enabled translation actions that apply to ``page``'s type."""
    content_type = ContentType.objects.get_for_model(page.specific_class)
    return LLMAction.objects.filter(
        enabled=True, translation__isnull=False, page_types=content_type
    ).order_by("name")


def offered(page: Page, user) -> bool:
    """Whether the editor's menu offers "Translate into…" for ``page``."""
    return (
        getattr(settings, "WAGTAIL_I18N_ENABLED", False)
        and can_edit_page(user, page)
        and Locale.objects.exclude(pk=page.locale_id).exists()
        and translation_actions(page).exists()
    )


def translate_url(page: Page) -> str:
    return reverse("wagtail_llm_actions_report:translate", args=[page.pk])


class TranslateView(WagtailAdminTemplateMixin, TemplateView):
    """GET: the translation actions and locales to choose. POST: queue the translation."""

    template_name = "wagtail_llm_actions/translate.html"
    header_icon = "globe"
    http_method_names = ["get", "post"]

    def dispatch(self, request, *args, **kwargs):
        self.page = get_object_or_404(Page, pk=kwargs["page_id"]).specific
        if not can_edit_page(request.user, self.page):
            raise PermissionDenied
        self.edit_url = reverse("wagtailadmin_pages:edit", args=[self.page.pk])
        return super().dispatch(request, *args, **kwargs)

    def get_page_title(self):
        return _("Translate “%(page)s” into…") % {"page": self.page.title}

    def get_breadcrumbs_items(self):
        return [
            {"url": self.edit_url, "label": self.page.title},
            {"url": "", "label": _("Translate")},
        ]

    def get_context_data(self, **kwargs):
        context = super().get_context_data(**kwargs)
        chosen = set(self.request.POST.getlist("locale"))
        actions = list(translation_actions(self.page))
        # The estimates are for the first action (the one chosen by default).
        action = actions[0] if actions else None
        context.update(
            page=self.page,
            cancel_url=self.edit_url,
            actions=actions,
            estimated=action,
            locales=[
                {
                    "code": locale.language_code,
                    "label": language_name(locale),
                    "exists": self.page.has_translation(locale),
                    "checked": locale.language_code in chosen,
                    "estimate": estimate(action, self.page, locale, self.request.user)
                    if action is not None
                    else None,
                }
                for locale in Locale.objects.exclude(pk=self.page.locale_id).order_by(
                    "language_code"
                )
            ],
        )
        return context

    def post(self, request, *args, **kwargs):
        action = translation_actions(self.page).filter(pk=request.POST.get("action") or 0).first()
        codes = request.POST.getlist("locale")
        if action is None:
            messages.error(request, _("Choose a translation action."))
            return self.get(request, *args, **kwargs)
        if not codes:
            messages.error(request, _("Choose at least one locale."))
            return self.get(request, *args, **kwargs)
        try:
            for locale in locales(self.page, codes):
                check(action, self.page, locale, request.user)
        except LLMActionError as e:
            messages.error(request, e.message)
            return self.get(request, *args, **kwargs)
        job = queued_runs.create_job(
            queued_runs.KIND_TRANSLATE, request.user, page=self.page, action=action, locales=codes
        )
        return enqueue(request, job) or redirect(self.edit_url)


def translate_done(request, item, job, status):
    """Where a translation's progress page goes when it ended: the page's editor, with what
    was saved (a button per translation) or why not."""
    page = item.page
    edit_url = reverse("wagtailadmin_pages:edit", args=[page.pk]) if page else "/"
    if status.state != "succeeded":
        if status.state == "cancelled":
            messages.warning(request, _("Cancelled: no further translation was saved."))
        else:
            messages.error(request, status.message)
        return redirect(edit_url)
    done = (item.result or {}).get("translations") or []
    buttons = [
        messages.button(
            reverse("wagtailadmin_pages:edit", args=[entry["page"]]),
            _("Open %(locale)s") % {"locale": entry["locale"]},
        )
        for entry in done
        if entry.get("page")
    ]
    problems = sum(
        len(entry.get("failed") or []) + len(entry.get("review") or []) for entry in done
    )
    text = _("“%(page)s” translated into %(locales)s: drafts saved, nothing published.") % {
        "page": page.title if page else "",
        "locales": ", ".join(entry["locale"] for entry in done),
    }
    if problems:
        text += " " + _(
            "%(count)s segment(s) kept as they were (failed, or edited by hand): see the "
            "interaction log."
        ) % {"count": problems}
        messages.warning(request, text, buttons=buttons)
    else:
        messages.success(request, text, buttons=buttons)
    return redirect(edit_url)
