"""docs/behaviour.md §7 states the timing defaults of ``Settings``: a row whose value is a
plain number of seconds (``2 s``, ``0.25 s``) must match the field's default, so a changed
default cannot leave the document behind."""

from __future__ import annotations

import re
from pathlib import Path

from tether.settings import Settings

SECTION = (Path(__file__).resolve().parents[2] / "docs" / "behaviour.md").read_text()
TABLE = SECTION.split("## 7. Timing defaults", 1)[1].split("\n## ", 1)[0]
ROW = re.compile(r"^\| `(\w+)` \| ([0-9.]+) s \|", re.MULTILINE)


def test_single_valued_rows_match_the_settings_defaults() -> None:
    rows = ROW.findall(TABLE)
    assert len(rows) >= 10, "the §7 table lost its rows"
    defaults = Settings.model_fields
    wrong = []
    for name, value in rows:
        assert name in defaults, f"§7 names {name}, which is no setting"
        default = defaults[name].default
        if float(value) != float(default):
            wrong.append(f"{name}: docs say {value} s, Settings says {default}")
    assert wrong == [], "update docs/behaviour.md §7:\n" + "\n".join(wrong)
