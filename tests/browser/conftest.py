"""Browser tests run against ``live_server``, so the database is flushed after each one.

The flush also removes what migrations created (Wagtail's root page, default locale and
site) that every later test needs. ``test_editor_browser`` marks its tests
``serialized_rollback=True``, which makes pytest-django keep a copy of that data; this
fixture restores the copy before every browser test, whatever its own marker says.
"""

import pytest


@pytest.fixture(autouse=True)
def _restore_migrated_data(django_db_serialized_rollback):
    """Request Django's serialized rollback for every browser test."""
