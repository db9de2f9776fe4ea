"""Signals sent by the service.

``answer_stored(sender=LLMService, interaction=...)`` is sent when a model's answer has been
committed to its ``LLMInteraction`` (status "answered") and before the draft is written.
From then on the answer survives anything: a crash, a failed write, a locked page.
"""

from django.dispatch import Signal

answer_stored = Signal()
