"""The results store of an evaluation: ``results.jsonl`` (:mod:`.results`), what a cell depends on beyond its key
(:mod:`.provenance`), the per-rank shards of a distributed run (:mod:`.shards`), an attack cell's seeded blocks
(:mod:`.blocks`) and the worst case's adversarial examples (:mod:`.examples`, ``worst-case*.npz``)."""
