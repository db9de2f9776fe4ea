"""The run of one action on one object, read top-down (``LLMService.run`` puts it together).

1. :mod:`.access`: may this user run it here, now (permission, page type, locks)?
2. :mod:`.prepare`: read the latest revision, fill the prompt's variables, render the
   messages, hash what the run depends on.
3. :mod:`.calls`: call the model with the strategy chosen once per run: one field
   (:mod:`.calls.single`, with map-reduce over a long source in :mod:`.calls.map_reduce`),
   several candidates (:mod:`.calls.candidates`), several fields from one JSON answer with one
   repair (:mod:`.calls.structured`); :mod:`.calls.plan` builds the first request for dry runs.
4. :mod:`.recording`: the interaction and run rows, failures, the page-history entry.
5. :mod:`.drafts`: store the paid answer, then write the draft against the newest revision
   under the row lock (:mod:`.stored_form` keeps the fields the action did not write as stored).

A pipeline's step runs through the same steps (:mod:`.steps`).

Nothing here imports the service, views, forms or ``wagtail_hooks``, nor litellm at import.
"""
