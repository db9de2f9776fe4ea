"""The house rules of the package's layout (issue 20), checked from the source with ``ast``:

- size: no module over 600 lines, no class over 300, no function over 80 (migrations aside),
  but for the commented exceptions in ``ALLOWED``;
- layers: every module is placed in one of three layers; the domain (models, extraction,
  providers, the run steps, …) never imports the service or the admin wiring, and the engine
  (service, jobs, editor, pipelines) never imports the wiring (views, viewsets, forms,
  wagtail_hooks, URLconfs, panels, integrations, …). Imports inside functions count too.
"""

from __future__ import annotations

import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parent.parent / "wagtail_llm_actions"
NAME = "wagtail_llm_actions"

MAX_MODULE, MAX_CLASS, MAX_FUNCTION = 600, 300, 80

#: Exceptions kept on purpose, each with its reason: "module.py" (lines), "module.py:Class" or
#: "module.py:Class.method" / "module.py:function" -> the size allowed.
ALLOWED: dict[str, int] = {
    # A management command's options and its modes (pages, descendants, all, pipelines,
    # jobs, dry run, stored answers) in one class, as Django's own commands are; each mode
    # is a short method.
    "management/commands/run_llm_action.py:Command": 360,
    # One flat, ordered table from LiteLLM's exception types to the app's errors: the order
    # decides which message a user sees (subclasses first), so it stays in one place.
    "providers/litellm.py:map_exception": 130,
}

#: Every top-level module or package is in exactly one layer (a new one must be placed).
#: The admin wiring: HTTP, forms, templates, hooks, integrations. Nothing below imports it.
WIRING = (
    "snippet_urls",
    "apps",
    "checks",
    "model_choices",
    "lazy",
    "charts",
    "xlsx",
    "budget_panels",
    "review_urls",
    "localize",
    "views",
    "viewsets",
    "forms",
    "translation_form",
    "wagtail_hooks",
    "bulk_actions",
    "image_bulk_actions",
    "panels",
    "reports",
    "filters",
    "listing_filters",
    "report_urls",
    "editor_urls",
    "image_urls",
    "templatetags",
    "management",
)
#: The engine: runs, jobs, editor runs, pipelines over the domain. The domain never imports it.
ENGINE = (
    "service",
    "jobs",
    "tasks",
    "editor",
    "pipelines",
    "unchanged",
    "review",
    "signal_handlers",
    "review_queue",
    "canary",
    "queued_runs",
    "job_counts",
    "triggers",
    "images",
    "selection",
)
#: The domain: models, extraction, providers, the run's steps and what they use.
DOMAIN = (
    "",  # the package's own __init__
    "models",
    "exceptions",
    "conf",
    "db",
    "rowstate",
    "signals",
    "storable",
    "formatting",
    "labels",
    "log_actions",
    "permissions",
    "moderation",
    "provenance",
    "extraction",
    "outputs",
    "structured",
    "templating",
    "chunking",
    "estimates",
    "budgets",
    "budget_fit",
    "providers",
    "response_cache",
    "run",
    "translation",
    "snippets",
)


def _modules():
    for path in sorted(PACKAGE.rglob("*.py")):
        rel = path.relative_to(PACKAGE)
        if rel.parts[0] in ("migrations", "static", "templates"):
            continue
        yield rel, ast.parse(path.read_text(), filename=str(path))


#: Domain modules inside an engine package: an image's rendition and the messages sending it
#: (the run path's alt text of image blocks uses them; they import no engine).
DOMAIN_IN_ENGINE = ("images.files", "images.messages")


def _layer(dotted: str) -> str | None:
    """``views.jobs`` -> "wiring"; ``service`` -> "engine"; ``run.drafts`` -> "domain";
    None for a module no layer names."""
    if dotted.startswith(DOMAIN_IN_ENGINE):
        return "domain"
    top = dotted.split(".")[0]
    for layer, names in (("wiring", WIRING), ("engine", ENGINE), ("domain", DOMAIN)):
        if top in names:
            return layer
    return None


def _own_imports(rel: Path, tree: ast.AST):
    """The package's modules ``rel`` imports (relative to the package), anywhere in it."""
    here = list(rel.with_suffix("").parts)
    if here[-1] == "__init__":
        here = here[:-1]
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = here[: len(here) - node.level + (1 if rel.name == "__init__.py" else 0)]
                module = ".".join([NAME, *base, *([node.module] if node.module else [])])
            else:
                module = node.module or ""
            names = [module] + [f"{module}.{alias.name}" for alias in node.names]
        else:
            continue
        for name in names:
            if name == NAME or name.startswith(NAME + "."):
                inner = name[len(NAME) + 1 :]
                if inner:
                    yield inner


def _module_name(rel: Path) -> str:
    parts = list(rel.with_suffix("").parts)
    if parts[-1] == "__init__":
        parts = parts[:-1]
    return ".".join(parts)


def test_no_module_class_or_function_grows_past_its_size():
    too_big = []
    for rel, tree in _modules():
        lines = len((PACKAGE / rel).read_text().splitlines())
        if lines > ALLOWED.get(str(rel), MAX_MODULE):
            too_big.append(f"{rel}: {lines} lines")

        def visit(node, prefix, rel=rel):
            for child in ast.iter_child_nodes(node):
                if isinstance(child, ast.ClassDef | ast.FunctionDef | ast.AsyncFunctionDef):
                    qualname = f"{prefix}{child.name}"
                    size = child.end_lineno - child.lineno + 1
                    limit = MAX_CLASS if isinstance(child, ast.ClassDef) else MAX_FUNCTION
                    if size > ALLOWED.get(f"{rel}:{qualname}", limit):
                        too_big.append(f"{rel}:{qualname}: {size} lines")
                    visit(child, qualname + ".")
                else:
                    visit(child, prefix)

        visit(tree, "")
    assert not too_big, "over the size limits:\n" + "\n".join(too_big)


def test_the_allow_list_names_only_what_is_still_too_big():
    """An exception that is no longer needed is taken off the list (so it cannot regrow)."""
    sizes: dict[str, int] = {}
    for rel, tree in _modules():
        sizes[str(rel)] = len((PACKAGE / rel).read_text().splitlines())

        def visit(node, prefix, rel=rel):
            for child in ast.iter_child_nodes(node):
                if isinstance(child, ast.ClassDef | ast.FunctionDef | ast.AsyncFunctionDef):
                    qualname = f"{prefix}{child.name}"
                    sizes[f"{rel}:{qualname}"] = child.end_lineno - child.lineno + 1
                    visit(child, qualname + ".")
                else:
                    visit(child, prefix)

        visit(tree, "")
    stale = []
    for key in ALLOWED:
        default = MAX_MODULE if ":" not in key else None
        if default is None:
            last = key.rsplit(":", 1)[1].rsplit(".", 1)[-1]
            default = MAX_CLASS if last[:1].isupper() else MAX_FUNCTION
        if sizes.get(key, 0) <= default:
            stale.append(key)
    assert not stale, f"no longer over the limit, take off ALLOWED: {stale}"


def test_every_module_is_placed_in_one_layer():
    """A new module is placed in WIRING, ENGINE or DOMAIN (an unplaced one would not be
    guarded), and no name is in two layers."""
    unplaced = sorted(
        {_module_name(rel) for rel, _ in _modules() if _layer(_module_name(rel)) is None}
    )
    assert not unplaced, f"place these in WIRING, ENGINE or DOMAIN: {unplaced}"
    twice = set(WIRING) & set(ENGINE) | set(WIRING) & set(DOMAIN) | set(ENGINE) & set(DOMAIN)
    assert not twice, f"in two layers: {sorted(twice)}"
    tops = {_module_name(rel).split(".")[0] for rel, _ in _modules()}
    stale = sorted((set(WIRING) | set(ENGINE) | set(DOMAIN)) - tops)
    assert not stale, f"no such module any more: {stale}"


def test_lower_layers_never_import_higher_ones():
    wrong = []
    rank = {"domain": 0, "engine": 1, "wiring": 2}
    for rel, tree in _modules():
        mine = _layer(_module_name(rel))
        for name in _own_imports(rel, tree):
            theirs = _layer(name)
            if mine is None or theirs is None:
                continue  # test_every_module_is_placed_in_one_layer names it
            if rank[theirs] > rank[mine]:
                wrong.append(f"{_module_name(rel)} ({mine}) imports {name} ({theirs})")
    assert not wrong, "\n".join(sorted(set(wrong)))
