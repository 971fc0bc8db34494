"""The explorer page: one self-contained HTML file, its scripts and data inlined.

The page inlines, in order: its stylesheet (``assets/explorer.css``), the vendored libraries
(``vendor/``: Cytoscape.js draws the circuit, Chart.js the curves; names, versions, licences and
sha256 in ``vendor/vendor.json``), the JSON document of :func:`~circuit_atlas.explorer.data.
explorer_data` in a ``<script type="application/json">`` element, and the page's behaviour
(``assets/explorer.js``). It loads nothing from the network and opens from a ``file://`` URL.
"""

from __future__ import annotations

import json
import logging
import os
import re
from importlib import resources
from pathlib import Path
from typing import Any

import circuit_atlas
from circuit_atlas.errors import AnalysisError
from circuit_atlas.explorer.data import DEFAULT_MAX_EDGES, explorer_data
from circuit_atlas.report_frames import esc

__all__ = ["VENDORED", "explorer_html", "vendored_libraries", "write_explorer"]

logger = logging.getLogger(__name__)

VENDORED: tuple[str, ...] = ("cytoscape.min.js", "chart.umd.min.js")
"""The vendored library files the page inlines, in load order."""

_SOURCE_MAP = re.compile(r"^//# sourceMappingURL=.*$", re.MULTILINE)


def _resource(folder: str, name: str) -> str:
    return (resources.files("circuit_atlas.explorer") / folder / name).read_text(encoding="utf-8")


def vendored_libraries() -> list[dict[str, Any]]:
    """The vendored libraries' records (name, version, licence, file, sha256, tarball)."""
    return json.loads(_resource("vendor", "vendor.json"))["libraries"]


def _script(text: str, name: str) -> str:
    """``text`` checked to be safe inside ``<script>`` (nothing in it can end the element)."""
    lowered = text.lower()
    if "</script" in lowered or "<!--" in lowered:
        raise AnalysisError(f"{name} contains '</script' or '<!--' and cannot be inlined")
    return text


def _json_script(data: dict[str, Any]) -> str:
    """``data`` as compact JSON, every ``<`` escaped as a JSON unicode escape (only in strings)."""
    return json.dumps(data, separators=(",", ":"), allow_nan=False).replace("<", "\\u003c")


_BODY = """
<h1>{title}</h1>
<p class="muted">circuit-atlas {version} · {n_models} model(s), {n_tasks} task(s), {n_circuits}
circuit(s) · at most {cap} edges drawn per circuit (the largest by |score|) · drawn with
{libraries}. Hover a node or an edge for its name, score and role; scroll to zoom, drag to pan;
arrow keys on a slider step through the checkpoints.</p>
<div id="controls">
  <label>model <select id="model"></select></label>
  <label>task <select id="task"></select></label>
  <label>checkpoint <input id="step" type="range" min="0" max="1000" step="1" list="step-ticks">
    <datalist id="step-ticks"></datalist><span id="step-label"></span></label>
  <label>compare <select id="compare"><option value="off">off</option>
    <option value="checkpoint">with another checkpoint</option>
    <option value="model">with another model size</option></select></label>
  <label id="ref-checkpoint-box" hidden>reference <input id="ref-step" type="range" min="0"
    max="1000" step="1" list="ref-step-ticks"><datalist id="ref-step-ticks"></datalist>
    <span id="ref-step-label"></span></label>
  <label id="ref-model-box" hidden>reference model <select id="ref-model"></select></label>
</div>
<div id="status"></div>
<div id="compare-summary"></div>
<div id="notice" hidden></div>
<div id="main">
  <div><div id="graph"></div><div id="legend"></div>
    <p class="muted">Layered by layer: input at the bottom, logits at the top, each layer's heads
    and then its MLP side by side. Edge width ∝ |EAP-IG score| (relative to the largest drawn),
    colour = sign; in compare mode, colour = added (in the current circuit only), removed (in
    the reference only, dashed) or kept. Nodes are coloured by their first role for the task
    (docs/explorer.md); roles are whole-model, a head with a role need not be in the
    circuit.</p></div>
  <div id="charts">
    <div><canvas id="chart-metric"></canvas></div>
    <div><canvas id="chart-faith"></canvas></div>
    <div><canvas id="chart-size"></canvas></div>
    <div><canvas id="chart-jaccard"></canvas></div>
    <p class="muted">Red: the current checkpoint (orange: the reference). Tokens seen on a log
    axis (a checkpoint at 0 tokens is not on it). Jaccard: in-circuit edges of consecutive
    faithful circuits, as in the report's Figure 5 (unsmoothed).</p>
  </div>
</div>
<div id="tip" hidden></div>
"""


def explorer_html(data: dict[str, Any], *, title: str = "circuit-atlas explorer") -> str:
    """The explorer page for a document of :func:`~circuit_atlas.explorer.data.explorer_data`.

    Args:
        data: The JSON document (embedded as is, compactly).
        title: Page title.

    Returns:
        The HTML text (UTF-8), with every script and the data inlined.
    """
    libraries = vendored_libraries()
    scripts = "".join(
        f"<script>{_script(_SOURCE_MAP.sub('', _resource('vendor', name)), name)}</script>"
        for name in VENDORED
    )
    payload = _json_script(data)
    body = _BODY.format(
        title=esc(title),
        version=esc(circuit_atlas.__version__),
        n_models=len(data["models"]),
        n_tasks=len(data["tasks"]),
        n_circuits=len(data["circuits"]),
        cap=data["max_edges"],
        libraries=esc(", ".join(f"{lib['name']} {lib['version']} ({lib['licence']})"
                                for lib in libraries)),  # fmt: skip
    )
    return (
        '<!DOCTYPE html><html lang="en"><head><meta charset="utf-8">'
        f"<title>{esc(title)}</title><style>{_resource('assets', 'explorer.css')}</style>"
        f"</head><body>{body}{scripts}"
        f'<script type="application/json" id="explorer-data">{payload}</script>'
        f"<script>{_script(_resource('assets', 'explorer.js'), 'explorer.js')}</script>"
        "</body></html>\n"
    )


def write_explorer(
    source: Any,
    out_path: str | os.PathLike[str],
    *,
    max_edges: int = DEFAULT_MAX_EDGES,
    title: str = "circuit-atlas explorer",
) -> Path:
    """Write the interactive circuit explorer of a results store as one HTML file.

    Args:
        source: A ``ResultsStore``, a store directory, or table frames (see
            :func:`~circuit_atlas.explorer.data.explorer_data`).
        out_path: The HTML file to write (its directory is created).
        max_edges: The most edges drawn per circuit (:data:`~circuit_atlas.explorer.data.
            DEFAULT_MAX_EDGES`).
        title: Page title.

    Returns:
        The path written.

    Raises:
        AnalysisError: If the store holds no circuit or ``max_edges`` is invalid.
        circuit_atlas.errors.StoreError: If a store directory is invalid.
    """
    document = explorer_html(explorer_data(source, max_edges=max_edges), title=title)
    out = Path(out_path)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(document, encoding="utf-8")
    logger.info("wrote explorer %s (%d bytes)", out, len(document))
    return out
