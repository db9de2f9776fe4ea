""" "Translate into…" from the page editor's action menu (issue 23 §1), and from the snippet
editor's for a translatable snippet (§2, :class:`SnippetTranslateView`): choose the
translation action and the locales, then the translation is queued as the editor's other runs
are (no model call inside the request) and the browser follows its progress. When it ends,
:func:`translate_done` says what was saved, with a link to each translation's editor."""

from __future__ import annotations

from typing import Any

from django.conf import settings
from django.contrib.contenttypes.models import ContentType
from django.core.exceptions import PermissionDenied
from django.shortcuts import get_object_or_404, redirect
from django.urls import reverse
from django.utils.translation import gettext as _
from django.utils.translation import gettext_lazy
from django.views.generic import TemplateView
from wagtail.admin import messages
from wagtail.admin.views.generic.base import WagtailAdminTemplateMixin
from wagtail.models import Locale, Page

from .. import queued_runs, snippets
from ..exceptions import LLMActionError
from ..models import LLMAction
from ..permissions import can_edit_page
from ..translation import snippets as snippet_translation
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


def snippet_translation_actions(obj: Any):
    """The enabled translation actions whose snippet types include ``obj``'s model."""
    content_type = ContentType.objects.get_for_model(type(obj))
    return LLMAction.objects.filter(
        enabled=True, translation__isnull=False, snippet_types=content_type
    ).order_by("name")


def snippet_offered(obj: Any, user) -> bool:
    """Whether the snippet editor's menu offers "Translate into…" for the snippet ``obj``."""
    return (
        getattr(settings, "WAGTAIL_I18N_ENABLED", False)
        and obj is not None
        and obj.pk is not None
        and snippet_translation.is_translatable_snippet(obj)
        and snippets.keeps_revisions(type(obj))
        and snippets.can_change(user, obj)
        and Locale.objects.exclude(pk=obj.locale_id).exists()
        and snippet_translation_actions(obj).exists()
    )


def snippet_translate_url(obj: Any) -> str:
    opts = type(obj)._meta
    return reverse(
        "wagtail_llm_actions_snippets:translate", args=[opts.app_label, opts.model_name, obj.pk]
    )


class TranslateView(WagtailAdminTemplateMixin, TemplateView):
    """GET: the translation actions and locales to choose. POST: queue the translation.

    The source is a page here; :class:`SnippetTranslateView` overrides what differs for a
    snippet (how it is found, who may translate it, its actions and the job's target)."""

    template_name = "wagtail_llm_actions/translate.html"
    header_icon = "globe"
    http_method_names = ["get", "post"]
    #: How a locale without a translation yet is described.
    new_label = gettext_lazy("(new page, as a draft)")

    def dispatch(self, request, *args, **kwargs):
        self.page = self.get_source(**kwargs)
        if not self.may_translate(request.user):
            raise PermissionDenied
        self.edit_url = self.source_edit_url()
        problem = self.source_problem()
        if problem:
            messages.error(request, problem)
            return redirect(self.edit_url)
        return super().dispatch(request, *args, **kwargs)

    def get_source(self, page_id, **kwargs):
        return get_object_or_404(Page, pk=page_id).specific

    def may_translate(self, user) -> bool:
        return can_edit_page(user, self.page)

    def source_edit_url(self) -> str:
        return reverse("wagtailadmin_pages:edit", args=[self.page.pk])

    def source_problem(self) -> str:
        """Why the source cannot be translated at all ("" if it can)."""
        return ""

    def actions(self):
        return translation_actions(self.page)

    def title(self) -> str:
        return getattr(self.page, "title", "") or str(self.page)

    def create_job(self, action, codes):
        return queued_runs.create_job(
            queued_runs.KIND_TRANSLATE,
            self.request.user,
            page=self.page,
            action=action,
            locales=codes,
        )

    def get_page_title(self):
        return _("Translate “%(page)s” into…") % {"page": self.title()}

    def get_breadcrumbs_items(self):
        return [
            {"url": self.edit_url, "label": self.title()},
            {"url": "", "label": _("Translate")},
        ]

    def get_context_data(self, **kwargs):
        context = super().get_context_data(**kwargs)
        chosen = set(self.request.POST.getlist("locale"))
        actions = list(self.actions())
        # The estimates are for the first action (the one chosen by default).
        action = actions[0] if actions else None
        context.update(
            page=self.page,
            new_label=self.new_label,
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
        action = self.actions().filter(pk=request.POST.get("action") or 0).first()
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
        return enqueue(request, self.create_job(action, codes)) or redirect(self.edit_url)


class SnippetTranslateView(TranslateView):
    """ "Translate into…" for a translatable snippet with revisions (issue 23 §2): the same
    screen; the translations are new snippets (drafts) or new revisions of existing ones."""

    new_label = gettext_lazy("(new snippet, as a draft)")

    def get_source(self, app_label, model_name, pk, **kwargs):
        from .snippets import snippet_for

        return snippet_for(app_label, model_name, pk)

    def may_translate(self, user) -> bool:
        return snippets.can_change(user, self.page)

    def source_edit_url(self) -> str:
        from .snippets import edit_url

        return edit_url(self.request.user, self.page)

    def source_problem(self) -> str:
        obj = self.page
        if not snippet_translation.is_translatable_snippet(obj):
            return _("%(model)s snippets are not translatable (no TranslatableMixin).") % {
                "model": type(obj)._meta.verbose_name
            }
        if not snippets.keeps_revisions(type(obj)):
            return snippet_translation.no_revisions(type(obj)).message
        try:  # i18n switched off
            locales(obj, [])
        except LLMActionError as e:
            return e.message
        return ""

    def actions(self):
        return snippet_translation_actions(self.page)

    def create_job(self, action, codes):
        return queued_runs.create_job(
            queued_runs.KIND_TRANSLATE,
            self.request.user,
            page=None,
            action=action,
            locales=codes,
            target=self.page,
        )


def translate_done(request, item, job, status):
    """Where a translation's progress page goes when it ended: the page's (or snippet's)
    editor, with what was saved (a button per translation) or why not."""
    source, edit_url = _source_of(request, item)
    if status.state != "succeeded":
        if status.state == "cancelled":
            messages.warning(request, _("Cancelled: no further translation was saved."))
        else:
            messages.error(request, status.message)
        return redirect(edit_url)
    done = (item.result or {}).get("translations") or []
    buttons = [
        messages.button(
            _translation_url(request, source, entry["page"]),
            _("Open %(locale)s") % {"locale": entry["locale"]},
        )
        for entry in done
        if entry.get("page")
    ]
    problems = sum(
        len(entry.get("failed") or []) + len(entry.get("review") or []) for entry in done
    )
    text = _("“%(page)s” translated into %(locales)s: drafts saved, nothing published.") % {
        "page": (getattr(source, "title", "") or str(source)) if source is not None else "",
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


def _source_of(request, item) -> tuple[Any, str]:
    """The item's page or snippet (None if deleted) and the URL of its editor."""
    if item.page_id is not None:
        return item.page, reverse("wagtailadmin_pages:edit", args=[item.page_id])
    from ..jobs.snippets import snippet_of
    from .snippets import edit_url

    obj = snippet_of(item)
    if obj is None:
        return None, reverse("wagtailadmin_home")
    return obj, edit_url(request.user, obj) or reverse("wagtailadmin_home")


def _translation_url(request, source, pk) -> str:
    """The editor of the translation ``pk`` (a page, or a snippet of the source's model)."""
    if source is None or isinstance(source, Page):
        return reverse("wagtailadmin_pages:edit", args=[pk])
    from .snippets import edit_url

    obj = type(source)._default_manager.filter(pk=pk).first()
    return edit_url(request.user, obj) if obj is not None else ""
