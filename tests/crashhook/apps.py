import os
import signal

from django.apps import AppConfig


def kill_once(sender, interaction, **kwargs) -> None:
    marker = os.environ.get("LLM_TEST_KILL_AFTER_ANSWER")
    if not marker:
        return
    try:
        fd = os.open(marker, os.O_CREAT | os.O_EXCL | os.O_WRONLY)
    except FileExistsError:
        return
    os.write(fd, str(interaction.pk).encode())
    os.close(fd)
    os.kill(os.getpid(), signal.SIGKILL)


class CrashHookConfig(AppConfig):
    name = "tests.crashhook"
    label = "llm_tests_crashhook"

    def ready(self) -> None:
        from wagtail_llm_actions.signals import answer_stored

        answer_stored.connect(kill_once, dispatch_uid="llm-tests-kill-once")
