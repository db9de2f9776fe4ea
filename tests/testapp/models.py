"""A recipe page whose body uses every block Wagtail ships, plus custom blocks.

It is the test site for extraction: ``tests/golden/all_blocks.txt`` is what its body reads as.
``StatisticsBlock`` and ``Statistic`` stand for blocks and snippets a site installs from a
design-system package (nobody here wrote them): a screen-reader switch and a layout choice
beside the content, and a snippet whose ``str()`` says little.
"""

from __future__ import annotations

from django import forms
from django.db import models
from wagtail import blocks
from wagtail.admin.panels import FieldPanel, MultiFieldPanel
from wagtail.contrib.table_block.blocks import TableBlock
from wagtail.contrib.typed_table_block.blocks import TypedTableBlock
from wagtail.documents.blocks import DocumentChooserBlock
from wagtail.embeds.blocks import EmbedBlock
from wagtail.fields import StreamField
from wagtail.images.blocks import ImageBlock, ImageChooserBlock
from wagtail.models import Page
from wagtail.snippets.blocks import SnippetChooserBlock
from wagtail.snippets.models import register_snippet


@register_snippet
class Chef(models.Model):
    name = models.CharField(max_length=255)
    restaurant = models.CharField(max_length=255, blank=True)

    def __str__(self) -> str:
        return self.name


@register_snippet
class Statistic(models.Model):
    """A figure and what it measures; it has no title, and ``str()`` gives only the figure."""

    value = models.CharField(max_length=50)
    description = models.TextField(help_text="What the number measures.")
    source = models.CharField(max_length=255, blank=True)
    internal_note = models.CharField(max_length=255, blank=True)  # not in the panels
    style = models.CharField(
        max_length=20, choices=[("plain", "Plain"), ("accent", "Accent")], default="plain"
    )

    panels = [
        FieldPanel("value"),
        MultiFieldPanel([FieldPanel("description"), FieldPanel("source")], heading="Details"),
        FieldPanel("style"),
    ]

    def __str__(self) -> str:
        return f"Statistics: {self.value}"


class Coordinates:
    """A custom block value with no ``__str__``: its repr holds a memory address."""

    def __init__(self, lat: float, lng: float, place: str = "") -> None:
        self.lat, self.lng, self.place = lat, lng, place


class CoordinatesBlock(blocks.FieldBlock):
    """A site's own block with no LLM reader: only Wagtail's search text describes it."""

    def __init__(self, required=False, **kwargs):
        self.field = forms.CharField(required=required)
        super().__init__(**kwargs)

    def to_python(self, value):
        if not value:
            return None
        lat, lng, place = (value.split(";", 2) + ["", ""])[:3]
        return Coordinates(float(lat), float(lng), place)

    def normalize(self, value):
        return self.to_python(value) if isinstance(value, str) else value

    def get_prep_value(self, value):
        if isinstance(value, str):
            return value
        return f"{value.lat};{value.lng};{value.place}" if value else ""

    def get_searchable_content(self, value):
        return [value.place] if value and value.place else []


class TimerBlock(blocks.FieldBlock):
    """A site's own block with an LLM reader (``get_llm_text``), stored as minutes."""

    def __init__(self, required=True, **kwargs):
        self.field = forms.IntegerField(required=required)
        super().__init__(**kwargs)

    def get_llm_text(self, value) -> str:
        if value < 0:
            raise ValueError(f"a timer cannot run for {value} minutes")
        hours, minutes = divmod(int(value), 60)
        return f"Timer: {hours} h {minutes} min" if hours else f"Timer: {minutes} min"


class HeadingBlock(blocks.StructBlock):
    text = blocks.CharBlock()
    size = blocks.ChoiceBlock(
        choices=[("h2", "Large"), ("h3", "Medium"), ("h4", "Small")], default="h2"
    )


class QuoteBlock(blocks.StructBlock):
    quote = blocks.BlockQuoteBlock()
    attribute_name = blocks.CharBlock(required=False, label="e.g. Mary Berry")
    theme = blocks.ChoiceBlock(
        choices=[("default", "Default"), ("highlight", "Highlight")], default="default"
    )


class StepBlock(blocks.StructBlock):
    title = blocks.CharBlock()
    instructions = blocks.RichTextBlock()
    difficulty = blocks.ChoiceBlock(
        choices=[("S", "Simple"), ("M", "Medium"), ("H", "Hard")], llm_content=True
    )
    minutes = blocks.IntegerBlock(required=False, label="Time (minutes)")
    show_timer = blocks.BooleanBlock(required=False)


class FigureBlock(blocks.StructBlock):
    image = ImageChooserBlock()
    caption = blocks.CharBlock(required=False)
    attribution = blocks.CharBlock(required=False)


class StatisticsBlock(blocks.StructBlock):
    """Key figures, as a design-system package ships them: content beside switches for the
    page's layout and screen readers."""

    heading = blocks.CharBlock(required=False)
    statistics = blocks.ListBlock(SnippetChooserBlock(Statistic, label="Statistic"))
    columns = blocks.ChoiceBlock(choices=[("2", "Two"), ("3", "Three")], default="3")
    sr_only_label = blocks.BooleanBlock(required=False, label="Screen reader only label")


class FactsBlock(blocks.StructBlock):
    servings = blocks.IntegerBlock()
    price = blocks.DecimalBlock(decimal_places=2, label="Price (EUR)")
    rating = blocks.FloatBlock()
    vegetarian = blocks.BooleanBlock(required=False)
    first_cooked = blocks.DateBlock()
    serve_at = blocks.TimeBlock()
    last_tested = blocks.DateTimeBlock()
    contact = blocks.EmailBlock()
    website = blocks.URLBlock()
    code = blocks.RegexBlock(regex=r"^[A-Z]{3}-\d+$", label="Recipe code")
    diets = blocks.MultipleChoiceBlock(
        choices=[("vegan", "Vegan"), ("gluten_free", "Gluten free"), ("nut_free", "Nut free")]
    )
    cuisine = blocks.ChoiceBlock(
        choices=[("fr", "French"), ("it", "Italian"), ("jp", "Japanese")], required=False
    )
    location = CoordinatesBlock()

    class Meta:
        llm_content = True  # every fact is content, the yes/no and choice ones too


class RecipePage(Page):
    intro = models.CharField(max_length=255, blank=True)
    summary = models.TextField(blank=True)
    teaser = models.CharField(max_length=120, blank=True)
    body = StreamField(
        [
            ("heading", HeadingBlock()),
            ("paragraph", blocks.RichTextBlock()),
            ("lead", blocks.TextBlock()),
            ("quote", QuoteBlock()),
            ("ingredients", blocks.ListBlock(blocks.CharBlock(), label="Ingredients")),
            ("step", StepBlock()),
            ("image", ImageBlock()),
            ("photo", ImageChooserBlock()),
            ("figure", FigureBlock()),
            ("document", DocumentChooserBlock(label="Printable recipe")),
            ("related_page", blocks.PageChooserBlock(label="See also")),
            ("chef", SnippetChooserBlock(Chef)),
            ("video", EmbedBlock()),
            ("table", TableBlock()),
            (
                "nutrition",
                TypedTableBlock(
                    [
                        ("text", blocks.CharBlock()),
                        ("amount", blocks.DecimalBlock()),
                        ("note", blocks.RichTextBlock()),
                    ]
                ),
            ),
            ("facts", FactsBlock()),
            ("statistics", StatisticsBlock()),
            ("html", blocks.RawHTMLBlock()),
            ("divider", blocks.StaticBlock(admin_text="Divider")),
            (
                "tips",
                blocks.StreamBlock([("tip", blocks.CharBlock()), ("warning", blocks.TextBlock())]),
            ),
            ("timer", TimerBlock()),
            ("location", CoordinatesBlock()),
        ],
        blank=True,
    )

    content_panels = Page.content_panels + [
        FieldPanel("intro"),
        FieldPanel("body"),
        FieldPanel("summary"),
        FieldPanel("teaser"),
    ]


# -- a custom image model (issue 24 §1: image actions write a custom field too) -------------------

from wagtail.images.models import AbstractImage, AbstractRendition, Image  # noqa: E402


class CaptionedImage(AbstractImage):
    """An image model with a field of its own; the image tests switch to it with
    ``WAGTAILIMAGES_IMAGE_MODEL`` (the site's default stays Wagtail's)."""

    caption = models.TextField(blank=True)

    admin_form_fields = (*Image.admin_form_fields, "caption")


class CaptionedRendition(AbstractRendition):
    image = models.ForeignKey(CaptionedImage, on_delete=models.CASCADE, related_name="renditions")

    class Meta:
        unique_together = (("image", "filter_spec", "focal_point_key"),)


# -- snippets as targets (issue 23 §2) -------------------------------------------------------

from wagtail.models import (  # noqa: E402
    DraftStateMixin,
    RevisionMixin,
    TranslatableMixin,
)


@register_snippet
class Dish(DraftStateMixin, RevisionMixin, TranslatableMixin, models.Model):
    """A snippet with drafts, revisions and translations: actions save new revisions."""

    name = models.CharField(max_length=255)
    description = models.TextField(blank=True)
    summary = models.TextField(blank=True)
    notes = models.TextField(blank=True)

    panels = [
        FieldPanel("name"),
        FieldPanel("description"),
        FieldPanel("summary"),
        FieldPanel("notes"),
    ]

    class Meta(TranslatableMixin.Meta):
        verbose_name_plural = "dishes"

    def __str__(self) -> str:
        return self.name


@register_snippet
class Tip(models.Model):
    """A snippet without revisions: only an action that writes directly may run on it."""

    title = models.CharField(max_length=255)
    text = models.TextField(blank=True)
    summary = models.TextField(blank=True)

    def __str__(self) -> str:
        return self.title


@register_snippet
class Term(TranslatableMixin, models.Model):
    """A translatable snippet without revisions: it cannot be translated by an action (a
    translation is saved as a revision)."""

    text = models.CharField(max_length=255)

    class Meta(TranslatableMixin.Meta):
        pass

    def __str__(self) -> str:
        return self.text
