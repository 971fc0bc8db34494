"""Studies: a typed study file, its units of work, the runner and its executors.

``config`` parses and validates the study file; ``units`` expands it into units (one
(model, checkpoint) each); ``runner`` computes a unit and commits it to the
:class:`~circuit_atlas.store.ResultsStore`; ``executors`` run units locally or on Ray; ``cache``
evicts downloaded checkpoints under a disk budget; ``status`` and ``export`` read a store back.
"""
