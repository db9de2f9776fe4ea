"""What ``run_llm_action --dry-run`` prints of the request a run would send."""

from __future__ import annotations

from typing import Any


def write_request(command: Any, prepared) -> None:
    """The parameters of the request the printed messages go in (as a run builds it), or
    why a run would stop before sending anything."""
    if prepared.planned is None:
        command.stderr.write(
            command.style.WARNING(
                f"A run would stop here, sending nothing: {prepared.request_error}"
            )
        )
        return
    command.stdout.write("[request]")
    for name, text in prepared.planned.parameters_as_text():
        command.stdout.write(f"{name}: {text}")
    for note in prepared.planned.notes():
        command.stdout.write(note)
    command.stdout.write("")
