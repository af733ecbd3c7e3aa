"""The grid of an evaluation: the typed cells (:mod:`.cells`: their keys, costs and records) and the split of the
cells across ``torchrun``'s ranks by expected cost (:mod:`.schedule`)."""
