"""An index for the report's search in error texts: only the rows that have one.

Search matches ``error_message__icontains`` among the rows whose error text is not empty
(``reports.search_q``); this partial index holds only those rows, so the search reads a few
thousand short entries instead of the wide table:

* SQLite: the error texts themselves (the lookup reads the index only, no table row).
* PostgreSQL with ``pg_trgm``: a trigram GIN index on ``UPPER(error_message)``, the
  expression Django's ``icontains`` compares (``UPPER(col) LIKE UPPER(pattern)``). It replaces
  migration 0005's trigram index on the bare column, which that expression cannot use.
  Without the extension (or the right to create it): a B-tree of the rows' ids.
* Other databases: nothing (search still works, scanning the table).
"""

from django.db import migrations

INDEX = "llmi_error_text_idx"
OLD_TRGM_INDEX = "llmi_error_message_trgm_idx"  # migration 0005
#: The index's condition, as Django writes ``.exclude(error_message="")`` (SQLite matches a
#: partial index only when the query has the same term).
HAS_TEXT = "NOT (\"error_message\" = '')"


def _has_trigrams(cursor) -> bool:
    """Whether ``pg_trgm`` is there, creating it if this database user may."""
    cursor.execute("SELECT 1 FROM pg_extension WHERE extname = 'pg_trgm'")
    if cursor.fetchone() is not None:
        return True
    # CREATE EXTENSION needs rights the site's database user may not have: try it in a
    # savepoint so a refusal leaves the migration's transaction usable.
    cursor.execute("SAVEPOINT llm_actions_trgm")
    try:
        cursor.execute("CREATE EXTENSION IF NOT EXISTS pg_trgm")
    except Exception:  # insufficient privilege, or the extension is not installed
        cursor.execute("ROLLBACK TO SAVEPOINT llm_actions_trgm")
        return False
    cursor.execute("RELEASE SAVEPOINT llm_actions_trgm")
    return True


def add_error_text_index(apps, schema_editor):
    connection = schema_editor.connection
    model = apps.get_model("wagtail_llm_actions", "LLMInteraction")
    table = connection.ops.quote_name(model._meta.db_table)
    with connection.cursor() as cursor:
        if connection.vendor == "sqlite":
            cursor.execute(
                f'CREATE INDEX IF NOT EXISTS {INDEX} ON {table} ("error_message") '
                f"WHERE {HAS_TEXT}"
            )
        elif connection.vendor == "postgresql":
            if _has_trigrams(cursor):
                cursor.execute(
                    f"CREATE INDEX IF NOT EXISTS {INDEX} ON {table} "
                    f'USING gin (UPPER("error_message") gin_trgm_ops) WHERE {HAS_TEXT}'
                )
            else:
                cursor.execute(
                    f'CREATE INDEX IF NOT EXISTS {INDEX} ON {table} ("id") WHERE {HAS_TEXT}'
                )
            cursor.execute(f"DROP INDEX IF EXISTS {OLD_TRGM_INDEX}")


def drop_error_text_index(apps, schema_editor):
    connection = schema_editor.connection
    if connection.vendor not in ("sqlite", "postgresql"):
        return
    with connection.cursor() as cursor:
        cursor.execute(f"DROP INDEX IF EXISTS {INDEX}")
        if connection.vendor == "postgresql":
            cursor.execute("SELECT 1 FROM pg_extension WHERE extname = 'pg_trgm'")
            if cursor.fetchone() is not None:
                table = connection.ops.quote_name(
                    apps.get_model("wagtail_llm_actions", "LLMInteraction")._meta.db_table
                )
                cursor.execute(
                    f"CREATE INDEX IF NOT EXISTS {OLD_TRGM_INDEX} ON {table} "
                    "USING gin (error_message gin_trgm_ops)"
                )


class Migration(migrations.Migration):
    dependencies = [
        ("wagtail_llm_actions", "0010_provider_slots"),
    ]

    operations = [
        migrations.RunPython(add_error_text_index, drop_error_text_index),
    ]
