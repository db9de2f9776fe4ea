"""Image actions (issue 24 §1): alt text and descriptions from what the image shows.

* :mod:`.files`: the rendition sent (and the checks before anything is sent);
* :mod:`.messages`: the vision messages, and what the log keeps of them;
* :mod:`.run`: one run on one image, written to the image's own field;
* :mod:`.undo`: the previous value put back.
"""
