"""Joins the two migrations written in parallel on top of 0003 (no schema change)."""

from django.db import migrations


class Migration(migrations.Migration):
    dependencies = [
        ("wagtail_llm_actions", "0004_interaction_stored_answer"),
        ("wagtail_llm_actions", "0005_report_indexes"),
    ]

    operations = []
