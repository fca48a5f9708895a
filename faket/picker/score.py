"""Scoring a picker's picks against the truth: the evaluation core, also for no picks.

The benchmark scores with faket's rules (:data:`BENCHMARK_RULES`): the classes it leaves out (vesicles, gold
beads: not picking targets) leave the truth, where the SHREC 2021 script would keep vesicles in recall's
denominator and count picks on them; ``rules="shrec"`` gives the official numbers.

A picker that found nothing is a result: an empty picks table scores zero precision, recall and F1.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import pandas as pd

from faket.evaluation.evaluate import RULES, evaluate_table

#: the rule set of the picker benchmark's scores (module doc)
BENCHMARK_RULES = "faket"


def score_picks(
    occupancy,
    truth: pd.DataFrame,
    picks,
    *,
    exclude_classes: Sequence[str] = (),
    clip: bool = False,
    source: str = "picks",
    rules: str = BENCHMARK_RULES,
) -> tuple[dict[str, Any], Any]:
    """``(metrics dict, Evaluation)`` of picks (voxels of the occupancy mask's grid) against a truth table.

    The dict has the layout of ``faket evaluate``'s metrics JSON (rules, pred_bin, pred_z_offset,
    excluded_classes, localisation, classification) without its file-name and provenance entries.
    """
    ev = evaluate_table(occupancy, truth, picks, exclude_classes=exclude_classes, clip=clip, source=source, rules=rules)
    body = {
        "rules": RULES[rules],
        "rules_name": rules,
        "pred_bin": 1.0,
        "pred_z_offset": 0.0,
        "excluded_classes": list(exclude_classes),
        **ev.to_dict(),
    }
    return body, ev
