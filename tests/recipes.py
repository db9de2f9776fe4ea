"""Realistic recipe pages for the test site (tests/testapp): every block Wagtail ships."""

from __future__ import annotations

import datetime
from decimal import Decimal

from django.core.files.base import ContentFile
from wagtail.documents import get_document_model
from wagtail.embeds.embeds import get_embed_hash
from wagtail.embeds.models import Embed
from wagtail.images import get_image_model
from wagtail.images.tests.utils import get_test_image_file
from wagtail.models import Page
from wagtail.rich_text import RichText

CACHED_VIDEO = "https://www.youtube.com/watch?v=dumpl1ngs"
UNCACHED_VIDEO = "https://vimeo.com/76979871"


def media() -> dict:
    """Images (with and without alt text), a document, chef and statistic snippets and a
    cached embed."""
    from tests.testapp.models import Chef, Statistic

    image_model = get_image_model()
    hero = image_model.objects.create(
        title="IMG_2041.jpg",
        file=get_test_image_file("hero.png"),
        description="Steamed dumplings in a bamboo basket",
    )
    pleating = image_model.objects.create(
        title="Pleating the dumplings", file=get_test_image_file("pleat.png")
    )
    dough = image_model.objects.create(
        title="dough-rest.png", file=get_test_image_file("dough.png"), description=""
    )
    document = get_document_model().objects.create(
        title="Dumpling recipe card (PDF)",
        file=ContentFile(b"%PDF-1.4 recipe", name="dumplings.pdf"),
    )
    chef = Chef.objects.create(name="Mei Lin", restaurant="The Steamer")
    statistics = [
        Statistic.objects.create(
            value="95%",
            description="of tasters preferred dumplings whose dough rested for 30 minutes",
            source="Kitchen panel, 2024",
            internal_note="ask Sam before quoting",
            style="accent",
        ),
        Statistic.objects.create(value="3 in 4", description="home cooks fold fewer pleats"),
    ]
    Embed.objects.create(
        url=CACHED_VIDEO,
        hash=get_embed_hash(CACHED_VIDEO),
        type="video",
        html='<iframe src="https://www.youtube.com/embed/dumpl1ngs"></iframe>',
        title="How to fold dumplings",
        provider_name="YouTube",
    )
    return {
        "hero": hero,
        "pleating": pleating,
        "dough": dough,
        "document": document,
        "chef": chef,
        "statistics": statistics,
    }


def recipe_body(m: dict, related: Page | None = None, timer: int = 20) -> list:
    """A dumpling recipe using every block of ``RecipePage.body``."""
    return [
        ("heading", {"text": "Pork and chive dumplings", "size": "h2"}),
        ("lead", "Soft, juicy dumplings you can fold in an afternoon."),
        (
            "paragraph",
            RichText(
                "<p>These dumplings come from <b>Mei Lin</b>’s kitchen. Dr. Chen, her teacher, "
                "folded 1.5 kg of them a day.</p>"
                f'<embed embedtype="image" id="{m["pleating"].pk}" format="left" '
                'alt="Hands pleating a wrapper"/>'
                "<p>Rest the dough &amp; the filling.</p>"
            ),
        ),
        ("image", {"image": m["hero"], "decorative": False, "alt_text": ""}),
        (
            "image",
            {"image": m["dough"], "decorative": False, "alt_text": "Dough resting under a cloth"},
        ),
        ("image", {"image": m["pleating"], "decorative": True, "alt_text": ""}),
        ("photo", m["pleating"]),
        (
            "figure",
            {
                "image": m["hero"],
                "caption": "Ready to steam",
                "attribution": "Photo by Sam Park",
            },
        ),
        (
            "quote",
            {
                "quote": "A good dumpling has eighteen folds.",
                "attribute_name": "Mei Lin",
                "theme": "highlight",
            },
        ),
        ("ingredients", ["500 g flour", "300 g minced pork", "1 bunch garlic chives"]),
        ("heading", {"text": "Method", "size": "h3"}),
        (
            "step",
            {
                "title": "Make the dough",
                "instructions": RichText("<p>Mix flour and water, knead for 10 minutes.</p>"),
                "difficulty": "S",
                "minutes": 25,
                "show_timer": True,
            },
        ),
        (
            "step",
            {
                "title": "Fold",
                "instructions": RichText("<p>Pleat each wrapper around the filling.</p>"),
                "difficulty": "M",
                "minutes": None,
                "show_timer": False,
            },
        ),
        ("timer", timer),
        (
            "table",
            {
                "data": [
                    ["Oven", "Time", "Notes"],
                    ["Steamer", "12 min", ""],
                    ["Pan", "8 min", "Add <b>water</b> halfway"],
                ],
                "table_header_choice": "row",
                "first_row_is_table_header": True,
                "first_col_is_header": False,
                "table_caption": "Cooking times",
            },
        ),
        (
            "nutrition",
            {
                "caption": "Per 100 g",
                "columns": [
                    {"type": "text", "heading": "Nutrient"},
                    {"type": "amount", "heading": "Amount (g)"},
                    {"type": "note", "heading": "Note"},
                ],
                "rows": [
                    {"values": ["Protein", "9.5", "<p>from the <i>pork</i></p>"]},
                    {"values": ["Fat", "7.25", "<p></p>"]},
                ],
            },
        ),
        (
            "facts",
            {
                "servings": 4,
                "price": Decimal("12.50"),
                "rating": 4.5,
                "vegetarian": False,
                "first_cooked": datetime.date(2019, 2, 5),
                "serve_at": datetime.time(18, 30),
                "last_tested": datetime.datetime(2025, 3, 1, 9, 15, tzinfo=datetime.UTC),
                "contact": "kitchen@example.com",
                "website": "https://example.com/dumplings",
                "code": "DUM-42",
                "diets": ["nut_free", "gluten_free"],
                "cuisine": "jp",
                "location": "45.76;4.83;Les Halles, Lyon",
            },
        ),
        (
            "statistics",
            {
                "heading": "Dumplings in numbers",
                "statistics": m["statistics"],
                "columns": "2",
                "sr_only_label": False,
            },
        ),
        ("document", m["document"]),
        *([("related_page", related)] if related is not None else []),
        ("chef", m["chef"]),
        ("video", CACHED_VIDEO),
        ("video", UNCACHED_VIDEO),
        (
            "html",
            '<div class="note"><p>Serve with black vinegar.</p>'
            '<script>track()</script><iframe src="https://maps.example"></iframe></div>',
        ),
        ("divider", None),
        (
            "tips",
            [("tip", "Keep the wrappers covered."), ("warning", "Do not overfill.")],
        ),
        ("location", "31.23;121.47;Shanghai"),
    ]


def make_recipe(parent: Page, m: dict, title: str, slug: str, **fields) -> Page:
    """A saved and published recipe page under ``parent`` (its body from ``recipe_body``)."""
    from tests.testapp.models import RecipePage

    fields.setdefault("body", recipe_body(m))
    fields.setdefault("intro", "Dumplings, step by step.")
    page = RecipePage(title=title, slug=slug, **fields)
    parent.add_child(instance=page)
    page.save_revision().publish()
    page.refresh_from_db()
    return page
