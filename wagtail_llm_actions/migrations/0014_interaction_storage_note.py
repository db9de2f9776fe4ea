"""LLMInteraction.storage_note: what was cleaned so the database could store the row."""

from django.db import migrations, models


class Migration(migrations.Migration):
    dependencies = [
        ("wagtail_llm_actions", "0013_cut_answers"),
    ]

    operations = [
        migrations.AddField(
            model_name="llminteraction",
            name="storage_note",
            field=models.CharField(blank=True, max_length=500, verbose_name="cleaned for storage"),
        ),
    ]
