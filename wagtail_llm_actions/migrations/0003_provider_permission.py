from django.db import migrations


class Migration(migrations.Migration):
    dependencies = [
        ("wagtail_llm_actions", "0002_jobs_runner_lease"),
    ]

    operations = [
        migrations.AlterModelOptions(
            name="llmaction",
            options={
                "ordering": ["name"],
                "permissions": [
                    (
                        "configure_llm_provider",
                        "Can configure LLM providers (model, API base, key name, extra parameters)",
                    )
                ],
                "verbose_name": "LLM action",
                "verbose_name_plural": "LLM actions",
            },
        ),
    ]
