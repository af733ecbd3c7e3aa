"""What a run loads and what its cells compute: :mod:`.run` (the run's state: models, records), :mod:`.judge` (the
defense's own inference rule), :mod:`.diagnose` + :mod:`.indicators` (the gradient-obfuscation checks),
:mod:`.transfer` (the transfer matrix), :mod:`.accounting` (forward passes)."""
