"""A small blog: the sandbox's content and the test suite's page types."""

from django.db import models
from modelcluster.contrib.taggit import ClusterTaggableManager
from modelcluster.fields import ParentalKey
from taggit.models import TaggedItemBase
from wagtail import blocks
from wagtail.admin.panels import FieldPanel, MultiFieldPanel
from wagtail.fields import RichTextField, StreamField
from wagtail.models import Page
from wagtail.search import index
from wagtail.snippets.models import register_snippet

from wagtail_llm_actions.panels import LLMActionPanel


@register_snippet
class Author(models.Model):
    name = models.CharField(max_length=255)
    bio = models.TextField(blank=True)

    def __str__(self):
        return self.name


class BlogPageTag(TaggedItemBase):
    content_object = ParentalKey(
        "blog.BlogPage", related_name="tagged_items", on_delete=models.CASCADE
    )


class SectionBlock(blocks.StructBlock):
    title = blocks.CharBlock()
    text = blocks.RichTextBlock()
    points = blocks.ListBlock(blocks.CharBlock(), required=False)

    class Meta:
        icon = "doc-full"


class BlogIndexPage(Page):
    intro = RichTextField(blank=True)

    content_panels = Page.content_panels + [FieldPanel("intro")]
    subpage_types = ["blog.BlogPage"]


class BlogPage(Page):
    date = models.DateField("Post date", null=True, blank=True)
    author = models.ForeignKey(
        Author, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    intro = models.CharField(max_length=250, blank=True)
    body = StreamField(
        [
            ("heading", blocks.CharBlock(form_classname="title")),
            ("paragraph", blocks.RichTextBlock()),
            ("quote", blocks.BlockQuoteBlock()),
            ("list", blocks.ListBlock(blocks.CharBlock(), icon="list-ul")),
            ("section", SectionBlock()),
        ],
        blank=True,
    )
    summary = models.TextField(max_length=600, blank=True)
    highlights = RichTextField(blank=True)
    tags = ClusterTaggableManager(through=BlogPageTag, blank=True)

    search_fields = Page.search_fields + [
        index.SearchField("intro"),
        index.SearchField("body"),
    ]

    content_panels = Page.content_panels + [
        FieldPanel("date"),
        FieldPanel("author"),
        FieldPanel("intro"),
        FieldPanel("body"),
        LLMActionPanel("summary"),
        LLMActionPanel("highlights"),
        LLMActionPanel("tags", actions=["suggest-tags"]),
    ]
    promote_panels = [
        MultiFieldPanel(
            [
                FieldPanel("slug"),
                FieldPanel("seo_title"),
                LLMActionPanel("search_description"),
            ],
            heading="For search engines",
        ),
        MultiFieldPanel([FieldPanel("show_in_menus")], heading="For site menus"),
    ]
    parent_page_types = ["blog.BlogIndexPage"]


class SimplePage(Page):
    """A page type with no body, to show actions that do not apply."""

    text = models.TextField(blank=True)
    content_panels = Page.content_panels + [FieldPanel("text")]


# -- snippets as targets (issue 23 §2): a snippet with drafts and revisions -------------------

from wagtail.models import DraftStateMixin, RevisionMixin  # noqa: E402


@register_snippet
class Tip(DraftStateMixin, RevisionMixin, models.Model):
    """A gardening tip: the "Summarize tip" action saves its summary in a new revision."""

    title = models.CharField(max_length=255)
    text = models.TextField()
    summary = models.TextField(blank=True)

    panels = [FieldPanel("title"), FieldPanel("text"), FieldPanel("summary")]

    def __str__(self):
        return self.title
