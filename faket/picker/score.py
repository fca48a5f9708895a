"""Scoring a picker's picks against the truth: the evaluation core (SHREC 2021 rules), also for no picks.

A picker that found nothing is a result: an empty picks table scores zero precision, recall and F1.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import pandas as pd

from faket.evaluation.evaluate import RULES, evaluate_table


def score_picks(occupancy, truth: pd.DataFrame, picks, *, exclude_classes: Sequence[str] = (), clip: bool = False,
                source: str = "picks") -> tuple[dict[str, Any], Any]:
    """``(metrics dict, Evaluation)`` of picks (voxels of the occupancy mask's grid) against a truth table.

    The dict has the layout of ``faket evaluate``'s metrics JSON (rules, pred_bin, pred_z_offset,
    excluded_classes, localisation, classification) without its file-name and provenance entries.
    """
    ev = evaluate_table(occupancy, truth, picks, exclude_classes=exclude_classes, clip=clip, source=source)
    body = {"rules": RULES, "pred_bin": 1.0, "pred_z_offset": 0.0, "excluded_classes": list(exclude_classes),
            **ev.to_dict()}
    return body, ev
