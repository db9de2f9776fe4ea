"""``run_llm_action`` on snippets: ``--model app_label.ModelName`` with ``--id ID`` (here and
now) or ``--all`` (a job on the bulk engine, foreground with progress or ``--enqueue``);
``--dry-run`` prints the messages of each selected snippet. Snippets with revisions get a new
revision; others are written directly (an action that opts in), each write undoable."""

from __future__ import annotations

from django.core.management.base import CommandError

from wagtail_llm_actions import jobs
from wagtail_llm_actions.exceptions import LLMActionError
from wagtail_llm_actions.formatting import format_cost
from wagtail_llm_actions.models import InteractionTrigger, JobKind, LLMAction
from wagtail_llm_actions.service import LLMService
from wagtail_llm_actions.snippets import snippet_model
from wagtail_llm_actions.unchanged import unchanged_since_last_write


def run(command, action: LLMAction, user, options) -> None:
    """Run ``action`` on the snippets ``options`` select (see the module's docstring)."""
    try:
        model = snippet_model(options["model"])
    except ValueError as e:
        raise CommandError(str(e)) from None
    if not action.applies_to_snippet(model):  # (nor to its translations)
        raise CommandError(
            f"The action “{action.slug}” does not apply to {model._meta.verbose_name} snippets."
        )
    if options["id"] is None and not options["all"]:
        raise CommandError("With --model, give --id ID or --all.")
    manager = model._default_manager
    if options["id"] is not None:
        objs = list(manager.filter(pk=options["id"]))
        if not objs:
            raise CommandError(f"No {model._meta.verbose_name} with id {options['id']}.")
    else:
        objs = list(manager.order_by("pk"))
        if not objs:
            raise CommandError(f"No {model._meta.verbose_name_plural} to run on.")
    if options.get("locale") or hasattr(action, "translation"):
        translate(command, action, objs, user, options["locale"] or [], every=options["all"])
    elif options["dry_run"]:
        dry_run(command, action, objs, user)
    elif options["id"] is not None:
        run_one(command, action, objs[0], user, force=options["force"])
    else:
        run_job(command, action, model, [o.pk for o in objs], user, options)


def label(obj) -> str:
    return f"{type(obj)._meta.verbose_name.capitalize()} {obj.pk} “{obj}”"


def dry_run(command, action: LLMAction, objs: list, user) -> None:
    service = LLMService()
    for obj in objs:
        try:
            prepared = service.dry_run(action, obj, user)
        except LLMActionError as e:
            command.stderr.write(f"{label(obj)}: {e}")
            continue
        command.stdout.write(command.style.MIGRATE_HEADING(label(obj)))
        for message in prepared.messages:
            command.stdout.write(f"[{message['role']}]\n{message['content']}\n")
        command.write_request(prepared)


def run_one(command, action: LLMAction, obj, user, *, force: bool) -> None:
    service = LLMService()
    try:
        if not force and unchanged_since_last_write(action, obj, user, service=service):
            command.stdout.write(
                f"{label(obj)}: skipped, "
                f"{jobs.skip_reason_label(jobs.SKIP_UNCHANGED).lower()} (--force runs it)"
            )
            return
        interaction = service.run(action, obj, user, trigger=InteractionTrigger.COMMAND)
    except LLMActionError as e:
        raise CommandError(f"{label(obj)}: {e}") from e
    if interaction.revision_id is not None:
        done = f"draft revision {interaction.revision_id}"
    else:
        done = f"written directly (interaction {interaction.pk}; undo from the report)"
    command.stdout.write(
        command.style.SUCCESS(f"{label(obj)}: {done} ({interaction.total_tokens or 0} tokens)")
    )


def run_job(command, action: LLMAction, model: type, ids: list, user, options) -> None:
    plan = jobs.plan_snippet_job(action, user, model, ids)
    estimate = plan.estimate
    command.stdout.write(
        f"{plan.eligible} snippet(s) to run; estimate: {estimate.total_tokens} tokens, "
        f"{format_cost(estimate.cost, unknown='unknown')}"
    )
    job = jobs.create_snippet_job(
        action,
        user,
        model,
        ids,
        force=options["force"],
        kind=JobKind.COMMAND,
        trigger=InteractionTrigger.COMMAND,
    )
    command.follow_job(job, options, action.name)


def translate(
    command, action: LLMAction, objs: list, user, codes: list[str], *, every: bool = False
) -> None:
    """Translate each snippet into the locales ``codes``, here and now (one draft each);
    ``every`` (``--all``): the snippets in the default locale, the sources."""
    from wagtail_llm_actions.translation.run import language_name, locales, translate_page

    if not codes:
        raise CommandError(f"“{action.slug}” translates: name locales with --locale.")
    if every:
        from wagtail.models import Locale

        default = Locale.get_default()
        objs = [obj for obj in objs if getattr(obj, "locale_id", None) == default.pk]
    failures = 0
    for obj in objs:
        try:
            targets = locales(obj, codes)
        except LLMActionError as e:
            raise CommandError(f"{label(obj)}: {e}") from e
        for locale in targets:
            try:
                outcome = translate_page(
                    action, obj, locale, user, trigger=InteractionTrigger.COMMAND
                )
            except LLMActionError as e:
                failures += 1
                command.stderr.write(
                    command.style.ERROR(f"{label(obj)} → {language_name(locale)}: {e}")
                )
                continue
            done = "created" if outcome.created else "updated"
            command.stdout.write(
                command.style.SUCCESS(
                    f"{label(obj)} → {language_name(locale)}: {done}, draft revision "
                    f"{outcome.revision_id} ({outcome.sent} segment(s) sent)"
                )
            )
    if failures:
        raise CommandError(f"{failures} translation(s) failed; content left as it was.")
