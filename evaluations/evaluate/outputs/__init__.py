"""What a finished run writes, read from its store only: the headline worst case (:mod:`.worst_case`), ``report.md``
and the console table (:mod:`.report`), the PNGs (:mod:`.plots`), ``model-card.json`` (:mod:`.model_card`) and the
written reading (:mod:`.reading`)."""
