"""The message catalogues in ``wagtail_llm_actions/locale`` are current, complete and compiled.

* ``en/LC_MESSAGES/django.po`` is the source catalogue: it holds exactly the msgids Django's
  ``makemessages`` extracts from the code and templates today (run into a copy of the package).
* German and French translate every msgid, with no fuzzy entry, and their committed ``.mo``
  files are what Django's ``compilemessages`` makes of the ``.po`` files.

When a string changes, ``./scripts/messages.sh`` updates the catalogues; then translate the new
entries (and clear their ``fuzzy`` flag) and run it again to compile them. The browser scripts
take their texts from Python (``panels.editor_messages``), so there is no ``djangojs`` domain.
"""

from __future__ import annotations

import ast
import gettext
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from django.core.management import call_command
from django.utils import translation

ROOT = Path(__file__).resolve().parent.parent
PACKAGE = ROOT / "wagtail_llm_actions"
LOCALE = PACKAGE / "locale"
TRANSLATED = ["de", "fr"]
HOW_TO_FIX = "run ./scripts/messages.sh, translate what it adds, and run it again"


@pytest.fixture
def gettext_tools():
    """GNU gettext (``msgfmt``, ``xgettext``): Debian's ``gettext`` package (scripts/test.sh)."""
    missing = [tool for tool in ("msgfmt", "xgettext", "msgmerge") if not shutil.which(tool)]
    if missing:
        if os.environ.get("REQUIRE_GETTEXT") == "1":
            pytest.fail(f"REQUIRE_GETTEXT=1 but {', '.join(missing)} missing (apt install gettext)")
        pytest.skip(f"{', '.join(missing)} not installed (apt install gettext)")


Entry = dict


def read_po(path: Path) -> list[Entry]:
    """The entries of a PO file: msgctxt, msgid, msgid_plural, msgstr forms, flags (no header)."""
    entries: list[Entry] = []
    entry: Entry | None = None
    field: tuple[str, int] | None = None
    for line in path.read_text(encoding="utf-8").splitlines() + [""]:
        line = line.strip()
        if not line or line.startswith("#~"):
            if entry is not None:
                entries.append(entry)
            entry = None
            continue
        if entry is None:
            entry = {
                "msgctxt": None,
                "msgid": "",
                "msgid_plural": None,
                "msgstr": {},
                "flags": set(),
            }
        if line.startswith("#,"):
            entry["flags"] |= {flag.strip() for flag in line[2:].split(",")}
        elif line.startswith("#"):
            continue
        elif match := re.match(
            r"(msgctxt|msgid_plural|msgid|msgstr)(?:\[(\d+)\])?\s+(\".*\")$", line
        ):
            keyword, index, text = match.groups()
            field = (keyword, int(index or 0))
            if keyword == "msgstr":
                entry["msgstr"][field[1]] = ast.literal_eval(text)
            else:
                entry[keyword] = ast.literal_eval(text)
        elif line.startswith('"') and field is not None:
            keyword, index = field
            if keyword == "msgstr":
                entry["msgstr"][index] += ast.literal_eval(line)
            else:
                entry[keyword] += ast.literal_eval(line)
        else:
            raise ValueError(f"{path}: cannot read {line!r}")
    return [e for e in entries if e["msgid"] or e["msgctxt"]]  # the header has an empty msgid


def msgids(path: Path) -> set[tuple]:
    return {(e["msgctxt"], e["msgid"], e["msgid_plural"]) for e in read_po(path)}


def catalogue(language: str, domain: str = "django") -> Path:
    return LOCALE / language / "LC_MESSAGES" / f"{domain}.po"


@pytest.fixture(scope="module")
def extracted(tmp_path_factory) -> Path:
    """The English catalogue ``makemessages`` writes today, from a copy of the package."""
    if not shutil.which("xgettext"):
        pytest.skip("xgettext not installed (apt install gettext)")
    copy = tmp_path_factory.mktemp("makemessages") / "wagtail_llm_actions"
    shutil.copytree(PACKAGE, copy, ignore=shutil.ignore_patterns("__pycache__", "*.pyc", "locale"))
    (copy / "locale").mkdir()
    env = os.environ | {
        "PYTHONPATH": os.pathsep.join([str(ROOT), str(ROOT / "sandbox")]),
        "DJANGO_SETTINGS_MODULE": "tests.settings",
    }
    subprocess.run(
        [sys.executable, "-m", "django", "makemessages", "--locale", "en", "--no-obsolete"],
        cwd=copy,
        env=env,
        check=True,
        capture_output=True,
        timeout=300,
    )
    return copy / "locale" / "en" / "LC_MESSAGES" / "django.po"


def test_source_catalogue_holds_exactly_what_makemessages_extracts(extracted):
    committed, today = msgids(catalogue("en")), msgids(extracted)
    added, removed = today - committed, committed - today
    assert not added and not removed, (
        f"the catalogue is out of date ({HOW_TO_FIX}).\n"
        f"New strings: {sorted(m[1] for m in added)[:20]}\n"
        f"Gone strings: {sorted(m[1] for m in removed)[:20]}"
    )
    assert not (LOCALE / "en" / "LC_MESSAGES" / "djangojs.po").exists()


def test_no_script_uses_gettext_in_the_browser():
    """The scripts' texts come translated from Python; a ``gettext(`` in a script would need
    a ``djangojs`` catalogue and the JavaScript catalogue view."""
    scripts = (PACKAGE / "static").rglob("*.js")
    users = [p.name for p in scripts if re.search(r"\b(n|p|np)?gettext\(", p.read_text())]
    assert not users, users


@pytest.mark.parametrize("language", TRANSLATED)
def test_translations_have_every_msgid_translated_and_nothing_fuzzy(language):
    source = msgids(catalogue("en"))
    entries = read_po(catalogue(language))
    assert {(e["msgctxt"], e["msgid"], e["msgid_plural"]) for e in entries} == source, (
        f"{language} does not have the source catalogue's msgids ({HOW_TO_FIX})"
    )
    untranslated = [e["msgid"] for e in entries if not all(e["msgstr"].values())]
    fuzzy = [e["msgid"] for e in entries if "fuzzy" in e["flags"]]
    assert not untranslated, f"{language}: {len(untranslated)} untranslated: {untranslated[:10]}"
    assert not fuzzy, f"{language}: {len(fuzzy)} fuzzy: {fuzzy[:10]}"
    plurals = [e for e in entries if e["msgid_plural"] is not None]
    assert all(sorted(e["msgstr"]) == [0, 1] for e in plurals)


@pytest.mark.parametrize("language", TRANSLATED)
def test_placeholders_are_kept(gettext_tools, language):
    """``msgfmt --check`` (python-format placeholders and the header) passes."""
    result = subprocess.run(
        ["msgfmt", "--check", "--output-file", os.devnull, str(catalogue(language))],
        capture_output=True,
        text=True,
    )
    assert result.returncode == 0, result.stderr
    brace = re.compile(r"\{[a-z_.]*\}")
    for entry in read_po(catalogue(language)):
        source = entry["msgid_plural"] or entry["msgid"]
        last = entry["msgstr"][max(entry["msgstr"])]
        assert sorted(brace.findall(last)) == sorted(brace.findall(source)), entry["msgid"]


def mo_catalogue(path: Path) -> dict:
    with path.open("rb") as f:
        translations = gettext.GNUTranslations(f)
    return {key: value for key, value in translations._catalog.items() if key != ""}


@pytest.mark.parametrize("language", TRANSLATED)
def test_compiled_catalogues_match_their_po_files(gettext_tools, language, tmp_path, monkeypatch):
    """The committed .mo is what Django's ``compilemessages`` makes of the committed .po."""
    folder = tmp_path / "locale" / language / "LC_MESSAGES"
    folder.mkdir(parents=True)
    shutil.copy(catalogue(language), folder / "django.po")
    monkeypatch.chdir(tmp_path)
    call_command("compilemessages", locale=[language], verbosity=0)
    committed = catalogue(language).with_suffix(".mo")
    assert committed.exists(), f"{committed} is missing ({HOW_TO_FIX})"
    assert mo_catalogue(committed) == mo_catalogue(folder / "django.mo"), (
        f"{committed.relative_to(ROOT)} is stale ({HOW_TO_FIX})"
    )


@pytest.mark.parametrize(
    "language, expected",
    [
        ("de", "%(feature)s-Aktion ausführen"),
        ("fr", "Exécuter une action %(feature)s"),
        ("en", "Run %(feature)s action"),
    ],
)
def test_django_finds_the_catalogues(language, expected):
    with translation.override(language):
        assert translation.gettext("Run %(feature)s action") == expected


@pytest.mark.django_db
def test_the_admin_speaks_the_editors_language(client, django_user_model):
    from wagtail.users.models import UserProfile

    user = django_user_model.objects.create_superuser("ada", "ada@example.com", "password")
    # The report's heading names the feature ("AI", translated, unless FEATURE_NAME is set).
    for language, heading in [("de", "KI-Interaktionen"), ("fr", "Interactions IA")]:
        profile = UserProfile.get_for_user(user)
        profile.preferred_language = language
        profile.save()
        client.force_login(user)
        response = client.get("/admin/llm-actions/report/")
        assert response.status_code == 200
        html = response.content.decode()
        assert f'lang="{language}"' in html and heading in html
