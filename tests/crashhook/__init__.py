"""A test-only app: SIGKILL the worker right after an answer is stored, once.

Installed by ``tests/qcluster_settings.py`` when ``LLM_TEST_KILL_AFTER_ANSWER`` names a
marker file. The first worker process that stores an answer creates the file and kills
itself with SIGKILL (no cleanup, no draft written); later answers (the marker exists) pass.
"""
