"""Turn dotted, StreamField-aware paths such as ``body.section.text`` into plain text.

::

    extract_text(page, "body").text            # the whole stream, one block per paragraph
    extract_text(page, "body.paragraph").text  # only the paragraph blocks
    extract_text(page, "author.name").text     # an attribute of a related object
    validate_source_path(BlogPage, "body.section.points")
    validate_target_field(BlogPage, "summary", "text")

Paths only ever name model fields and block names: no methods are called and no private
attribute is read, so a path written in the admin cannot reach anything else.

Every block Wagtail ships has a reader here (see README, "Source paths"); a site's own block
reads through its ``get_llm_text(value)`` method, a reader registered with the
``register_llm_block_readers`` hook, or else Wagtail's ``get_searchable_content``. A reader
that fails raises ``ExtractionError`` naming the block. Yes/no and choice blocks are
presentation switches unless marked as content (``llm_content`` on the block, or the
``BLOCKS`` setting, which also leaves out any block marked "presentation").

The modules, from the page down:

- :mod:`.extract`: ``extract_text``, the text of a path on an object;
- :mod:`.paths`: parsing and validating source paths, the paths offered in the admin;
- :mod:`.targets`: which fields can receive an answer, in which output mode;
- :mod:`.readers`: the per-block registry (``READER_HOOK``) and the walk through blocks;
- :mod:`.marks`: content and presentation (the ``BLOCKS`` setting, ``llm_content``);
- :mod:`.values`: how one value reads (labels, choices, yes/no, images, embeds, tables);
- :mod:`.snippets`: chosen snippets;
- :mod:`.text`: HTML to text, and the plain-text helpers.
"""

from ..exceptions import ExtractionError
from .extract import Extracted, extract_text, tag_names
from .marks import CONTENT, PRESENTATION, BlockMarks, resolve_block_marks
from .paths import PAGE_CONTENT_FIELDS, PathError, describe_paths, validate_source_path
from .readers import READER_HOOK, BlockReader
from .snippets import SNIPPET_MAX_CHARS, SNIPPET_MAX_FIELDS
from .targets import (
    OUTPUT_MODES,
    PAGE_TARGET_FIELDS,
    RICH_TEXT,
    TAGS,
    TEXT,
    describe_targets,
    get_target_field,
    validate_target_field,
)
from .text import _truncate, html_to_text, source_hash

__all__ = [
    "CONTENT",
    "OUTPUT_MODES",
    "PAGE_CONTENT_FIELDS",
    "PAGE_TARGET_FIELDS",
    "PRESENTATION",
    "READER_HOOK",
    "RICH_TEXT",
    "SNIPPET_MAX_CHARS",
    "SNIPPET_MAX_FIELDS",
    "TAGS",
    "TEXT",
    "BlockMarks",
    "BlockReader",
    "Extracted",
    "ExtractionError",
    "PathError",
    "_truncate",  # the run's own cut of a source (service.py imports it from here)
    "describe_paths",
    "describe_targets",
    "extract_text",
    "get_target_field",
    "html_to_text",
    "resolve_block_marks",
    "source_hash",
    "tag_names",
    "validate_source_path",
    "validate_target_field",
]
