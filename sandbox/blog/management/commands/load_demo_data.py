"""Create the sandbox's demo content: a blog with 20 posts, prompts, actions and an admin.

Actions use the offline provider (``local/extractive``, ``local/keywords``) so everything works
without a key. With ``WAGTAIL_I18N_ENABLED`` (the sandbox's settings), German and French
locales, a "Translate" action (``local/translate``) and a post translated into German as a
draft show translation too. Set ``LLM_ACTIONS_MODEL`` (and ``LLM_ACTIONS_API_BASE`` /
``LLM_ACTIONS_API_KEY_NAME``) to point them at a real model instead, e.g.
``LLM_ACTIONS_MODEL=openai/gpt-4o-mini`` with ``OPENAI_API_KEY`` in the environment.
"""

import datetime
import os

from django.contrib.auth import get_user_model
from django.contrib.contenttypes.models import ContentType
from django.core.management.base import BaseCommand
from django.utils.text import slugify
from wagtail.models import Page, Site
from wagtail.rich_text import RichText

from blog.models import Author, BlogIndexPage, BlogPage
from wagtail_llm_actions.models import LLMAction, LLMPrompt

POSTS = [
    (
        "Composting in a small flat",
        "You do not need a garden to turn kitchen scraps into soil.",
        [
            "A worm bin fits under the sink and takes vegetable peelings, coffee grounds and "
            "torn cardboard. Kept moist and out of direct sun, it does not smell.",
            "Bokashi is the other option: scraps ferment in a sealed bucket with bran, and the "
            "result is buried in a planter or given to a community garden after two weeks.",
        ],
        [
            "Start with a few hundred worms",
            "Avoid citrus, onion and meat",
            "Harvest every three months",
        ],
    ),
    (
        "Why our library is open until midnight",
        "Late opening hours changed who uses the building.",
        [
            "Since the library stayed open until midnight, evening visits have tripled. "
            "Shift workers and students preparing for exams make up most of the late crowd.",
            "Staffing the late hours costs less than expected because two volunteers from the "
            "neighbourhood association cover the quiet stretch after ten.",
        ],
        [
            "Quiet study rooms stay bookable",
            "The café closes at nine",
            "Printing is free after ten",
        ],
    ),
    (
        "A beginner's guide to sourdough",
        "Flour, water, salt and patience are all you need.",
        [
            "A starter takes about a week to become active. Feed it equal weights of flour and "
            "water every day and keep it somewhere warm.",
            "Most failed loaves come from under-proofing. The dough is ready when it has grown "
            "by half and springs back slowly when pressed.",
        ],
        ["Use a kitchen scale", "Bake in a covered pot", "Let the loaf cool before cutting"],
    ),
    (
        "Cycling to work through the winter",
        "Cold weather is easier than it looks with the right kit.",
        [
            "Lights matter more than clothing. In December most commutes happen in the dark, "
            "so a bright front light and two rear lights are worth the money.",
            "Mudguards keep you dry from below, and a waterproof jacket with vents keeps you "
            "from overheating on the climbs.",
        ],
        ["Lower your tyre pressure on ice", "Clean the chain weekly", "Carry a spare tube"],
    ),
    (
        "What we learnt from a four-day week",
        "Our six-month trial ended with more output, not less.",
        [
            "The team agreed to keep meetings to mornings and to protect two afternoons a week "
            "for focused work. Customer response times did not suffer.",
            "Sick days fell by a third during the trial, and two people who had planned to "
            "leave decided to stay.",
        ],
        ["Measure before you start", "Agree on cover for customers", "Review after three months"],
    ),
    (
        "Repairing a wobbly chair",
        "Most loose chairs need glue, clamps and an evening.",
        [
            "Take the joint apart gently, scrape off the old glue and check that the tenon "
            "still fits snugly. A thin wood shaving can fill a small gap.",
            "Hide glue or a modern PVA both work. Clamp the chair square and leave it overnight "
            "before anyone sits on it.",
        ],
        ["Label every part", "Do not use screws", "Wipe away squeezed-out glue"],
    ),
    (
        "Planting for pollinators on a balcony",
        "Even a narrow balcony can feed bees from spring to autumn.",
        [
            "Choose plants that flower at different times: crocus in March, lavender in July "
            "and ivy flowers in October keep food available for most of the year.",
            "Single flowers are better than double ones, whose extra petals often hide the "
            "nectar and pollen.",
        ],
        ["Skip pesticides", "Add a shallow water dish", "Leave some stems standing in winter"],
    ),
    (
        "Running a neighbourhood repair café",
        "Once a month, volunteers fix what people would otherwise throw away.",
        [
            "Toasters, lamps and trousers are the most common repairs. About two thirds of the "
            "items brought in leave working again.",
            "The café runs on donations and a free room in the community centre. Volunteers "
            "teach visitors to do the repair themselves whenever possible.",
        ],
        ["Bring the power cable", "Expect a short wait", "Tea is always free"],
    ),
    (
        "How we cut our office energy bill",
        "Small changes added up to a 28 percent reduction in a year.",
        [
            "Most of the saving came from heating controls: rooms that are empty at weekends no "
            "longer heat to office temperature.",
            "Replacing the last fluorescent tubes with LED panels paid for itself in eighteen "
            "months, and the light is better for screen work.",
        ],
        ["Read the meter monthly", "Switch off monitors at night", "Ask staff for ideas"],
    ),
    (
        "Learning a language at forty",
        "Adults learn differently, not worse.",
        [
            "Children absorb accents more easily, but adults bring discipline and a larger "
            "vocabulary in their own language to build on.",
            "Fifteen minutes a day beats two hours on Sunday. Spaced repetition apps and a weekly "
            "conversation partner make a good combination.",
        ],
        ["Listen to podcasts", "Label things at home", "Accept making mistakes"],
    ),
    (
        "Making the school run car-free",
        "Parents organised walking buses for three primary schools.",
        [
            "Each walking bus has a fixed route and timetable, with two adults per group of "
            "twelve children. Stops are marked with small signs on lamp posts.",
            "Traffic outside the school gates fell noticeably, and teachers report that "
            "children arrive calmer and ready to learn.",
        ],
        ["Wear reflective vests", "Keep a rota of parents", "Walk in all weathers"],
    ),
    (
        "Choosing a first telescope",
        "Aperture matters more than magnification.",
        [
            "A simple reflector with a 130 mm mirror shows Saturn's rings, Jupiter's moons and "
            "many galaxies from a dark site.",
            "Avoid telescopes sold by magnification. Useful magnification is limited by the "
            "aperture and by the steadiness of the air.",
        ],
        ["Start with binoculars", "Let the telescope cool outside", "Use a red torch"],
    ),
    (
        "Hosting a zero-waste birthday party",
        "The bin bag at the end was half the usual size.",
        [
            "Guests brought their own cups, and the food was served on real plates borrowed "
            "from neighbours. Leftovers went home in jars.",
            "Instead of presents, the invitation asked for books to donate to the school "
            "library, which received forty-two titles.",
        ],
        ["Skip balloons", "Cook in bulk", "Compost the scraps"],
    ),
    (
        "Our move to open-source software",
        "Replacing licensed tools saved money and gave us control.",
        [
            "The office suite and the design tools were the easiest to replace. The accounting "
            "system took longest because of data migration.",
            "Training was the real cost. We ran short sessions every Friday for two months and "
            "wrote our own guides for common tasks.",
        ],
        ["Migrate one team first", "Keep the old system read-only", "Contribute fixes upstream"],
    ),
    (
        "Taking better photos with your phone",
        "Light and composition matter more than the camera.",
        [
            "Shoot with the light behind you or to the side, and tap the screen to set focus "
            "and exposure on your subject.",
            "Clean the lens before every session. A fingerprint smear is the most common cause "
            "of hazy phone photos.",
        ],
        ["Use the grid lines", "Avoid digital zoom", "Edit lightly"],
    ),
    (
        "A week of meals from one shopping trip",
        "Planning around a few versatile ingredients cuts waste and cost.",
        [
            "A roast chicken on Sunday becomes sandwiches on Monday and soup on Tuesday. Beans, "
            "rice and seasonal vegetables carry the rest of the week.",
            "Writing the plan on the fridge stops impulse buys and makes it clear what needs "
            "using up first.",
        ],
        ["Check the cupboard first", "Buy loose vegetables", "Freeze what you won't use"],
    ),
    (
        "Volunteering at the food bank",
        "Demand has doubled in two years, and so have volunteers.",
        [
            "Most volunteers sort donations on weekday mornings. Drivers who collect from "
            "supermarkets are the hardest roles to fill.",
            "The food bank now offers advice on energy bills and benefits alongside food "
            "parcels, which helps people out of crisis rather than through it.",
        ],
        ["Tins and pasta are always needed", "Check dates before donating", "Give an hour a week"],
    ),
    (
        "Restoring a vintage bicycle",
        "A rusty frame from a skip became a daily rider.",
        [
            "The frame was sound under the rust. Wire wool and oil brought back most of the "
            "chrome, and new cables and brake pads made it safe.",
            "Parts for old bicycles are easy to find second hand. The most expensive part of "
            "the restoration was a pair of new tyres.",
        ],
        ["Check the frame for cracks", "Replace all cables", "Keep the original saddle"],
    ),
    (
        "Writing clear emails at work",
        "Say what you need in the first line.",
        [
            "Readers decide in seconds whether an email needs action. Put the request or the "
            "decision first and the background after.",
            "One topic per email makes replies easier to track. Use a subject line that still "
            "makes sense a month later.",
        ],
        ["Keep it under 150 words", "Use bullet points for options", "Say when you need an answer"],
    ),
    (
        "Birdwatching in the city park",
        "Forty species were seen in a single morning.",
        [
            "Early morning is best, before the joggers and dog walkers. The pond attracts "
            "herons, grebes and the occasional kingfisher.",
            "A pair of binoculars and a pocket guide are enough to start. Listening is as "
            "important as looking: many birds are heard long before they are seen.",
        ],
        ["Move slowly", "Keep a notebook", "Join the monthly guided walk"],
    ),
]


class Command(BaseCommand):
    help = (
        "Create what is missing of the demo: blog posts, LLM prompts and actions, and an "
        "admin/admin superuser. Existing actions are never changed, unless --reset-actions."
    )

    def add_arguments(self, parser):
        parser.add_argument(
            "--reset-actions",
            action="store_true",
            help="Set the three demo actions back to their demo settings (and to "
            "LLM_ACTIONS_MODEL, when set), overwriting edits made in the admin.",
        )

    def handle(self, *args, **options):
        self.reset_actions = options["reset_actions"]
        self.create_superuser()
        index = self.create_blog()
        self.create_posts(index)
        self.create_actions()
        self.create_translation_demo(index)
        from blog.demo_images import create_image_demo

        create_image_demo(self.stdout, reset=self.reset_actions)
        from blog.demo_snippets import create_snippet_demo

        create_snippet_demo(self.stdout, reset=self.reset_actions)
        self.stdout.write(
            self.style.SUCCESS("Demo data ready. Log in at /admin/ as admin / admin.")
        )

    def create_superuser(self):
        User = get_user_model()
        if not User.objects.filter(username="admin").exists():
            User.objects.create_superuser("admin", "admin@example.com", "admin")

    def create_blog(self):
        existing = BlogIndexPage.objects.first()
        if existing:
            return existing
        root = Page.get_first_root_node()
        default_home = Page.objects.filter(depth=2, slug="home").first()
        index = BlogIndexPage(title="Blog", slug="blog", intro="<p>Notes from our community.</p>")
        root.add_child(instance=index)
        site = Site.objects.filter(is_default_site=True).first()
        if site:
            site.root_page = index
            site.save()
        else:
            Site.objects.create(hostname="localhost", root_page=index, is_default_site=True)
        if default_home and default_home.specific_class is Page:
            default_home.delete()
        return index

    def create_posts(self, index):
        author, _ = Author.objects.get_or_create(name="Sam Rivera", defaults={"bio": "Editor."})
        existing = set(BlogPage.objects.values_list("slug", flat=True))
        start = datetime.date(2026, 1, 5)
        for n, (title, intro, paragraphs, points) in enumerate(POSTS):
            page = BlogPage(
                title=title,
                date=start + datetime.timedelta(days=7 * n),
                author=author,
                intro=intro,
                body=[
                    ("heading", "Background"),
                    ("paragraph", RichText(f"<p>{paragraphs[0]}</p>")),
                    (
                        "section",
                        {
                            "title": "In practice",
                            "text": RichText(f"<p>{paragraphs[1]}</p>"),
                            "points": points,
                        },
                    ),
                    ("quote", intro),
                    ("list", points),
                ],
            )
            page.slug = slugify(title)
            if page.slug in existing:
                continue
            index.add_child(instance=page)
            page.save_revision().publish()

    def create_actions(self):
        model = os.environ.get("LLM_ACTIONS_MODEL")
        api_base = os.environ.get("LLM_ACTIONS_API_BASE", "")
        key_name = os.environ.get("LLM_ACTIONS_API_KEY_NAME", "")
        blog_type = ContentType.objects.get_for_model(BlogPage)
        specs = [
            {
                "slug": "generate-summary",
                "name": "Generate summary",
                "prompt": (
                    "summarize",
                    "Summarize",
                    "Summarize the following blog post titled “{title}” in two or three "
                    "sentences for the listing page.\n\n{context}\n\n{body}",
                ),
                "source_field": "body",
                "target_field": "summary",
                "system_message": "You are a helpful editor who writes concise summaries.",
                "context_message": "Write in plain, friendly British English.",
                "output_mode": "text",
                "local": "local/extractive",
                "max_tokens": 200,
            },
            {
                "slug": "suggest-tags",
                "name": "Suggest tags",
                "prompt": (
                    "tags",
                    "Suggest tags",
                    "Suggest five to eight short topic tags for this blog post, as a "
                    "comma-separated list.\n\nTitle: {title}\n\n{body}",
                ),
                "source_field": "body",
                "target_field": "tags",
                "system_message": "You label content for a website. Answer with tags only.",
                "context_message": "",
                "output_mode": "tags",
                "local": "local/keywords",
                "max_tokens": 60,
            },
            {
                "slug": "seo-description",
                "name": "SEO description",
                "prompt": (
                    "seo",
                    "SEO description",
                    "Write a meta description of at most 155 characters for the page "
                    "“{title}”.\n\n{intro}\n\n{body.paragraph}",
                ),
                "source_field": "body",
                "target_field": "search_description",
                "system_message": "You write search engine descriptions.",
                "context_message": "",
                "output_mode": "text",
                "local": "local/extractive",
                "max_tokens": 80,
            },
        ]
        reset = self.reset_actions
        for spec in specs:
            slug, name, template = spec["prompt"]
            prompt, created = LLMPrompt.objects.get_or_create(
                slug=slug, defaults={"name": name, "template": template}
            )
            if created or prompt.latest_revision_id is None:
                prompt.save_revision()
            fields = {
                "name": spec["name"],
                "prompt": prompt,
                "source_field": spec["source_field"],
                "target_field": spec["target_field"],
                "system_message": spec["system_message"],
                "context_message": spec["context_message"],
                "output_mode": spec["output_mode"],
                "model": model or spec["local"],
                "api_base": api_base,
                "api_key_name": key_name,
                "max_tokens": spec["max_tokens"],
                "temperature": 0.3 if model else None,
            }
            action = LLMAction.objects.filter(slug=spec["slug"]).first()
            if action is not None and not reset:
                # Edits made in the admin are kept: only what is missing is created.
                self.stdout.write(f"Kept the existing action “{action.name}”.")
                continue
            if action is None:
                action = LLMAction.objects.create(slug=spec["slug"], **fields)
            else:
                for name_, value in fields.items():
                    setattr(action, name_, value)
                action.save()
                self.stdout.write(f"Reset the action “{action.name}” to the demo settings.")
            action.page_types.set([blog_type])

    def create_translation_demo(self, index):
        """German and French locales, the "translate" action and one post in German."""
        from django.conf import settings
        from wagtail.models import Locale

        from wagtail_llm_actions.models import LLMTranslationSettings
        from wagtail_llm_actions.translation.run import translate_page

        if not getattr(settings, "WAGTAIL_I18N_ENABLED", False):
            return
        locales = {
            code: Locale.objects.get_or_create(language_code=code)[0] for code in ("de", "fr")
        }
        prompt = LLMPrompt.objects.filter(slug="summarize").first()
        action = LLMAction.objects.filter(slug="translate").first()
        if action is None and prompt is not None:
            action = LLMAction.objects.create(
                slug="translate",
                name="Translate",
                prompt=prompt,
                source_field="body",
                model=os.environ.get("LLM_ACTIONS_MODEL") or "local/translate",
                api_base=os.environ.get("LLM_ACTIONS_API_BASE", ""),
                api_key_name=os.environ.get("LLM_ACTIONS_API_KEY_NAME", ""),
            )
            action.page_types.set(
                ContentType.objects.get_for_model(m) for m in (BlogPage, BlogIndexPage)
            )
            LLMTranslationSettings.objects.create(
                action=action,
                style="Friendly and plain, as the English is.",
                glossary="de: compost = Kompost\nfr: compost = compost",
                do_not_translate="Bokashi",
            )
        if action is None:
            return
        post = BlogPage.objects.filter(locale=index.locale).order_by("path").first()
        for page in (index, post):
            if page is not None and not page.has_translation(locales["de"]):
                translate_page(action, page, locales["de"])
        self.stdout.write("German and French locales, and a post translated into German.")
