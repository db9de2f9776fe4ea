"""Report filters use one empty-choice convention; the action listing uses status tags."""

from __future__ import annotations

import re

import pytest
from django.urls import reverse

from tests.interactions_factory import make_one

pytestmark = pytest.mark.django_db


def test_every_report_filter_offers_all_and_never_dashes(client, superuser, post, action):
    make_one(action=action, page=post, user=superuser)
    client.force_login(superuser)
    html = client.get("/admin/llm-actions/report/").content.decode()
    assert "---------" not in html
    selects = re.findall(r'<select name="(\w+)"[^>]*>\s*<option value=""[^>]*>([^<]*)<', html)
    assert {name for name, _label in selects} >= {"action", "model", "user", "content_type"}
    assert {label.strip() for _name, label in selects} == {"All"}


def test_action_listing_shows_enabled_as_a_status_tag(client, superuser, make_action):
    make_action(name="Live one", slug="live-one")
    make_action(name="Switched off", slug="switched-off", enabled=False)
    client.force_login(superuser)
    html = client.get(
        reverse("wagtailsnippets_wagtail_llm_actions_llmaction:list")
    ).content.decode()
    assert "True" not in html and "False" not in html
    tags = re.findall(r'<span class="(w-status[^"]*)">\s*(Enabled|Disabled)\s*</span>', html)
    assert sorted(tags) == [("w-status", "Disabled"), ("w-status w-status--primary", "Enabled")]
