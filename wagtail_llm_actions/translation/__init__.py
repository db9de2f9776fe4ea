"""Translating pages into Wagtail locales (issue 23 §1).

A translation action is a kind of :class:`~wagtail_llm_actions.models.LLMAction`: an action
with a :class:`~wagtail_llm_actions.models.LLMTranslationSettings` row. It is not a snippet
of its own because everything a run needs is already the action's and keyed on it: model,
provider and key, allowed destinations, budgets per action, the response cache and the
interaction log. The settings row holds only what translation adds (style, glossary,
do-not-translate terms), so ``LLMAction`` stays as it is for every other action.

- :mod:`.segments`: a page's translatable texts, each with a stable path (block ids);
- :mod:`.markup`: rich text with its inline markup protected by placeholders, and checked;
- :mod:`.glossary`: the glossary and do-not-translate terms;
- :mod:`.request`: the one request per page and locale (segments as JSON), and its answer;
- :mod:`.memory`: which segments to send (source changed) and which to keep (edited by hand);
- :mod:`.apply`: the translated texts set into a copy of the source's values, links retargeted;
- :mod:`.run`: translating one page into one locale, as a new draft.
"""
