"""Selection tools in the rich-text editor (issue 24 §2): rewrite, shorten, expand, fix
spelling and grammar, change tone, and every action an admin marks as a selection tool.

The editor selects text in a Draftail field and picks a tool; the browser sends the
selection as HTML (links, bold, italic, line breaks) and the request only queues an editor
job (:mod:`.jobs`). A worker asks the model with the markup protected by placeholders
(:mod:`.rewrite`, reusing :mod:`..translation.markup`), through the gate (cache, budgets,
provider) and logged as an interaction; an answer that loses markup is asked again once,
then refused with the selection untouched. The browser shows a preview; Accept replaces the
selection (Draftail's undo restores it).

* :mod:`.tools`: the tools a page offers, and the action whose model each one runs with;
* :mod:`.rewrite`: one selection rewritten, markup checked;
* :mod:`.jobs`: the queued editor job and its run.
"""
