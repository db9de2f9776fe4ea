"""The ``WAGTAIL_LLM_ACTIONS`` setting, with defaults.

Example::

    WAGTAIL_LLM_ACTIONS = {
        "DEFAULT_MODEL": "openai/gpt-4o-mini",
        "DEFAULT_TIMEOUT": 60,
        "MAX_SOURCE_CHARS": 20000,
        "API_KEYS": {"MY_OPENAI_KEY": "sk-..."},  # or read from os.environ
    }
"""

from __future__ import annotations

from typing import Any

from django.conf import settings
from django.utils.functional import lazy
from django.utils.translation import gettext, gettext_lazy

DEFAULTS: dict[str, Any] = {
    # What editors see the feature called in menus and buttons ("Run AI action", the "AI"
    # group of the editor's action menu). None: "AI", translated; a site may name it, e.g.
    # "Assistant" or its product's name.
    "FEATURE_NAME": None,
    # Model string used to prefill new actions.
    "DEFAULT_MODEL": "local/extractive",
    # Per-call timeout in seconds when an action does not set one.
    "DEFAULT_TIMEOUT": 60,
    # Retries LiteLLM itself makes on transient errors within one call.
    "NUM_RETRIES": 0,
    # Extracted source text is cut to this many characters (the cut is recorded).
    "MAX_SOURCE_CHARS": 20000,
    # Named secrets an action may refer to by name (``api_key_name``). Values here
    # win over os.environ. Never stored in the database.
    "API_KEYS": {},
    # Environment variables an action may name as its key: names or fnmatch patterns
    # (case-sensitive). None means the variables LLM providers use (OPENAI_API_KEY,
    # ANTHROPIC_API_KEY… see providers/keynames.py); a list replaces them. Server secrets
    # such as DATABASE_URL and SECRET_KEY are refused whatever this says.
    "API_KEY_NAMES": None,
    # More names or patterns an action may name, added to API_KEY_NAMES (or its default):
    # how a site widens the list, e.g. ["MY_GATEWAY_KEY"].
    "EXTRA_API_KEY_NAMES": [],
    # URL prefixes an action may use as API base besides public https:// servers, e.g.
    # ["http://localhost:11434"]; ":*" as the port matches any port. See the README's
    # threat model: loopback, private and link-local addresses are refused unless listed.
    "ALLOWED_API_BASES": [],
    # Shorten over-long answers to the target's max_length instead of refusing them.
    "TRUNCATE_LONG_OUTPUT": False,
    # Extra provider backends: {"prefix": "dotted.path.ProviderClass"}.
    "PROVIDERS": {},
    # Image actions: the largest rendition (bytes, before base64) sent to a model; a larger
    # one is refused, nothing sent. 5 MB is Anthropic's limit (OpenAI takes 20 MB).
    "MAX_IMAGE_BYTES": 5 * 1024 * 1024,
    # Run editor (single page) jobs inline in the web request instead of on a worker.
    "RUN_INLINE": False,
    # The editor shows a single text answer as the model writes it (streamed; the partial
    # text is polled through the job's status). False: the answer appears when complete.
    "STREAM_EDITOR_ANSWERS": True,
    # Seconds between two writes of a streaming answer's partial text (and cancel checks).
    "STREAM_PUBLISH_INTERVAL": 0.25,
    # Seconds between the pieces of the offline provider's streamed answer (the sandbox).
    "LOCAL_STREAM_DELAY": 0.0,
    # Seconds the editor waits for a worker to pick a job up before telling the user.
    "WORKER_PICKUP_TIMEOUT": 8,
    # Bulk jobs: concurrent calls per model prefix (e.g. {"openai": 8}); "*" is the default.
    "CONCURRENCY": {"*": 4},
    # Bulk jobs: worker processes of one host that may work on bulk jobs at once (any job,
    # any host: idle workers join running jobs). None: the django-q2 cluster's workers
    # minus one (at least one), so one worker per host stays free for editor runs.
    "JOB_WORKERS_PER_HOST": None,
    # This host's name for the job engine (leases, the per-host limit above, statistics).
    # None: socket.gethostname(). Set it when several clusters share a host name.
    "HOST_ID": None,
    # No longer used (jobs take any free worker, see JOB_WORKERS_PER_HOST); kept so old
    # settings still load.
    "RUNNERS_PER_JOB": None,
    # Bulk jobs: attempts per page before an item is marked failed.
    "MAX_ATTEMPTS": 3,
    # Bulk jobs: base delay in seconds for exponential backoff between attempts.
    "RETRY_BACKOFF": 2.0,
    # Bulk jobs: seconds after which a running item whose worker vanished is reclaimed.
    "LEASE_SECONDS": 120,
    # Interactions older than this many days are deleted by ``purge_llm_interactions``
    # (None keeps them forever).
    "RETENTION_DAYS": None,
    # Import litellm when a django-q2 worker starts, not on its first job.
    "PRELOAD_IN_WORKER": True,
    # What blocks are, for the text sent to the model: {"app.blocks.StatsBlock": "content",
    # "app.blocks.StatsBlock.sr_only_label": "presentation"} (a block class, or a child of a
    # StructBlock/StreamBlock class by name). "presentation" leaves the block out with all it
    # holds; "content" reads yes/no and choice blocks, which are left out unless marked.
    "BLOCKS": {},
    # Provenance of generated fields (the editor's badge, the site's AI label): when text an
    # action wrote counts as reviewed: {"REVIEWED": "kept"} (a named person saved, accepted
    # or published it; the default) or "edited" (a person changed at least EDIT_THRESHOLD of
    # it, default 0.1); below HUMAN_BELOW similarity (default 0.5) the text is a person's.
    "PROVENANCE": {},
    # Seconds an answer is kept for identical calls of actions with "reuse identical
    # answers" on (LLMAction.use_cache); None turns the cache off for every action.
    "CACHE_TTL": 30 * 24 * 3600,
    # Refuse a bulk run of more than CANARY_SIZE pages of an action that changed since its
    # last bulk run until a canary (the action on a sample of pages) was run and each of its
    # drafts accepted or rejected in the review queue.
    "REQUIRE_CANARY": False,
    # Pages a canary runs on when the user picks none (the app picks them at random).
    "CANARY_SIZE": 5,
}


def get_setting(name: str) -> Any:
    """Return one ``WAGTAIL_LLM_ACTIONS`` entry, falling back to the default."""
    user = getattr(settings, "WAGTAIL_LLM_ACTIONS", {}) or {}
    if name in user:
        return user[name]
    return DEFAULTS[name]


def feature_name() -> str:
    """The feature's name for editors: ``FEATURE_NAME``, else "AI" (translated)."""
    name = get_setting("FEATURE_NAME")
    return str(name) if name else gettext("AI")


def _with_feature(text) -> str:
    return str(text) % {"feature": feature_name()}


#: ``with_feature(gettext_lazy("Run %(feature)s action"))``: a label naming the feature,
#: resolved when shown (the language and the setting of that moment).
with_feature = lazy(_with_feature, str)

# Labels naming the feature, each defined once: the button and the screens that name it
# read the same string ("Run AI action" in the bulk bar and in the jobs' empty state).
RUN_ACTION_LABEL = with_feature(gettext_lazy("Run %(feature)s action"))
JOBS_LABEL = with_feature(gettext_lazy("%(feature)s jobs"))
INTERACTIONS_LABEL = with_feature(gettext_lazy("%(feature)s interactions"))
ACTIONS_LABEL = with_feature(gettext_lazy("%(feature)s actions"))
