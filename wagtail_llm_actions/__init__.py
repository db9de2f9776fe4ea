"""Configurable LLM actions for Wagtail.

Importing this package is cheap: it never imports litellm (see ``providers``).
"""

__version__ = "0.1.0"
