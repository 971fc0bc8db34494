"""The interactive circuit explorer: one offline HTML file over a results store (issue 16).

``circuit-atlas explore RESULTS -o explorer.html`` (:func:`write_explorer`) draws the circuit of
the selected (model, task, checkpoint) as a layered graph with Cytoscape.js, heads coloured by
role, with a checkpoint slider, model-size and task selectors, a compare mode (edges added and
removed between two checkpoints or two sizes) and the task metric, faithfulness, size and
Jaccard curves beside it (Chart.js). :func:`explorer_data` is the JSON document it embeds.
See docs/explorer.md.
"""

from circuit_atlas.explorer.data import (
    DEFAULT_MAX_EDGES,
    EXPLORER_FORMAT,
    ROLE_ORDER,
    circuit_key,
    explorer_data,
    head_roles,
)
from circuit_atlas.explorer.page import explorer_html, vendored_libraries, write_explorer

__all__ = [
    "DEFAULT_MAX_EDGES",
    "EXPLORER_FORMAT",
    "ROLE_ORDER",
    "circuit_key",
    "explorer_data",
    "explorer_html",
    "head_roles",
    "vendored_libraries",
    "write_explorer",
]
