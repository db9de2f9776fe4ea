"""Indexes for the interaction report at scale.

* ``llmi_report_cover_idx``: every column the report's totals, chart and common filters read,
  so they scan a narrow index rather than the wide rows; on SQLite and PostgreSQL it is led by
  the day the report groups by, so the per-day totals need no sort (``models.ReportCoverIndex``).
* ``llmi_action_name_idx``: search finds matching action names among the distinct values.
* PostgreSQL only: a ``pg_trgm`` GIN index on ``error_message`` so search's ``ILIKE`` on error
  texts is an index lookup. The ``pg_trgm`` extension is created when the database user may;
  without that right (or on other databases) the index is skipped and search still works,
  scanning the error rows only.
"""

from django.db import migrations, models

import wagtail_llm_actions.models

TRGM_INDEX = "llmi_error_message_trgm_idx"


def add_trigram_index(apps, schema_editor):
    connection = schema_editor.connection
    if connection.vendor != "postgresql":
        return
    table = apps.get_model("wagtail_llm_actions", "LLMInteraction")._meta.db_table
    with connection.cursor() as cursor:
        cursor.execute("SELECT 1 FROM pg_extension WHERE extname = 'pg_trgm'")
        if cursor.fetchone() is None:
            # CREATE EXTENSION needs rights the site's database user may not have: try it in
            # a savepoint so a refusal leaves the migration's transaction usable.
            cursor.execute("SAVEPOINT llm_actions_trgm")
            try:
                cursor.execute("CREATE EXTENSION IF NOT EXISTS pg_trgm")
            except Exception:  # insufficient privilege, or the extension is not installed
                cursor.execute("ROLLBACK TO SAVEPOINT llm_actions_trgm")
                return
            cursor.execute("RELEASE SAVEPOINT llm_actions_trgm")
        cursor.execute(
            f"CREATE INDEX IF NOT EXISTS {TRGM_INDEX} ON {connection.ops.quote_name(table)} "
            "USING gin (error_message gin_trgm_ops)"
        )


def drop_trigram_index(apps, schema_editor):
    if schema_editor.connection.vendor == "postgresql":
        schema_editor.execute(f"DROP INDEX IF EXISTS {TRGM_INDEX}")


class Migration(migrations.Migration):
    dependencies = [
        ("wagtail_llm_actions", "0003_provider_permission"),
    ]

    operations = [
        migrations.AddIndex(
            model_name="llminteraction",
            index=wagtail_llm_actions.models.ReportCoverIndex(
                fields=[
                    "created_at",
                    "status",
                    "action",
                    "user",
                    "page",
                    "model",
                    "action_name",
                    "cost",
                    "prompt_tokens",
                    "completion_tokens",
                    "total_tokens",
                    "latency_ms",
                    "id",
                ],
                name="llmi_report_cover_idx",
            ),
        ),
        migrations.AddIndex(
            model_name="llminteraction",
            index=models.Index(fields=["action_name"], name="llmi_action_name_idx"),
        ),
        migrations.RunPython(add_trigram_index, drop_trigram_index, elidable=True),
    ]
