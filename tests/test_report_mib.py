"""The report's MIB section (circuit_atlas.report_mib)."""

from __future__ import annotations

import math

import pandas as pd

from circuit_atlas.report import write_report
from circuit_atlas.report_mib import mib_table


def _mib_rows() -> pd.DataFrame:
    rows = []
    for step, cpr, cmd in ((100, None, None), (1000, 0.9125, 0.0431)):
        for task, shift in (("ioi", 0.0), ("sva", 0.5)):
            rows.append({"unit_id": f"u{step}", "model": "tiny", "params": 1, "step": step,
                         "tokens_seen": step * 10, "task": task,
                         "cpr": None if cpr is None else cpr - shift,
                         "cmd": None if cmd is None else cmd + shift})
    return pd.DataFrame(rows)


def test_mib_table_is_one_row_per_checkpoint():
    table = mib_table(_mib_rows())
    assert list(table.columns) == ["model", "step", "tokens_seen", "ioi CPR", "ioi CMD",
                                   "sva CPR", "sva CMD"]
    assert table["step"].tolist() == [100, 1000]
    assert math.isnan(table.loc[0, "ioi CPR"])  # undefined stays undefined
    assert table.loc[1, "ioi CPR"] == 0.9125 and table.loc[1, "sva CMD"] == 0.5431
    assert mib_table(pd.DataFrame()).empty


def test_report_shows_the_mib_section(tmp_path):
    path = write_report({"mib": _mib_rows()}, tmp_path / "r.html")
    text = path.read_text()
    assert '<section id="mib">' in text and "0.9125" in text and "ioi CMD" in text
    assert "No interval: each value is an area under one curve" in text
    empty = write_report({}, tmp_path / "e.html").read_text()
    assert "No MIB metrics in the store" in empty
