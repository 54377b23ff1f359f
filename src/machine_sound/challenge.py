"""The DCASE 2021-2025 Task 2 test metrics and official score, computed as each year's official evaluator does.

- `dcase2022` (the 2022-2025 evaluators, `dcase2023_task2_evaluator`): per section, the AUROC of each domain uses
  that domain's normal clips and *all* anomalous clips of the section; the pAUC (max FPR 0.1) uses every clip of
  the section, both domains. The official score is the harmonic mean of every section's AUROC (source), AUROC
  (target) and pAUC, over all sections and machine types.
- `dcase2021` (`dcase2021_task2_evaluator`): per section and domain, AUROC and pAUC of that domain's test clips
  alone; the official score is the harmonic mean of all of them over sections, domains and machine types.

Both evaluators floor each value at the machine epsilon before the harmonic mean (`EPSILON`), so a zero does not
make it undefined. A value that cannot be computed (a domain without normal clips, a section without anomalous
ones) is missing, with the reason; the official score is then missing too (a mean of fewer values would not be
the challenge's). AUROC and pAUC are torchmetrics' (`binary_auroc`, `max_fpr` for the McClish-standardised pAUC
that sklearn's `roc_auc_score(..., max_fpr=0.1)` gives) on scores mapped into [0, 1] (`metrics.unit_scores`).
"""

from __future__ import annotations

import sys

import torch
from torchmetrics.functional.classification import binary_auroc

from machine_sound.metrics import unit_scores

EVALUATORS = ("dcase2021", "dcase2022")
DOMAINS = ("source", "target")
MAX_FPR = 0.1
EPSILON = sys.float_info.epsilon  # the evaluators' floor: numpy.maximum(values, sys.float_info.epsilon)


def _auroc(scores: torch.Tensor, flags: torch.Tensor, what: str) -> tuple[dict, dict]:
    """({auroc, pauc} or {}, {metric: why missing}) of clips selected for one metric."""
    lacking = [kind for kind, flag in (("normal", 0), ("anomalous", 1)) if not (flags == flag).any()]
    if lacking:
        return {}, {what: f"no {' and no '.join(lacking)} test clip"}
    unit = unit_scores(scores)
    return {"auroc": float(binary_auroc(unit, flags)), "pauc": float(binary_auroc(unit, flags, max_fpr=MAX_FPR))}, {}


def section_metrics(scores: torch.Tensor, anomalous: torch.Tensor, labels: torch.Tensor, domains: torch.Tensor,
                    names: list[str], evaluator: str = "dcase2022") -> dict[str, dict]:
    """The metrics of every section (label) with test clips: {name: {metric: value or None, 'missing': {metric:
    reason}}}. Inputs are (clips,) tensors: anomaly scores (any range), anomalous 0/1, labels (indices into
    `names`), domains (0 source, 1 target). Metrics: `auroc` (all the section's clips, the evaluator's 'AUC
    (all)'), `auroc_source`, `auroc_target` and `pauc` with `dcase2022`; with `dcase2021` also `pauc_source` and
    `pauc_target` (each domain's own clips), and `pauc` over all. ValueError for an unknown evaluator."""
    if evaluator not in EVALUATORS:
        raise ValueError(f"evaluator must be one of {EVALUATORS}, not {evaluator!r}")
    scores, anomalous, labels, domains = scores.double(), anomalous.long(), labels.long(), domains.long()
    out: dict[str, dict] = {}
    for k, name in enumerate(names):
        own = labels == k
        if not own.any():
            continue
        values: dict = {}
        missing: dict[str, str] = {}
        both, lack = _auroc(scores[own], anomalous[own], "auroc")
        values.update(auroc=both.get("auroc"), pauc=both.get("pauc"))
        missing.update(lack)
        if lack:
            missing["pauc"] = lack["auroc"]
        for d, domain in enumerate(DOMAINS):
            if evaluator == "dcase2022":  # the domain's normal clips and all the section's anomalous clips
                chosen = own & ((domains == d) | (anomalous == 1))
                result, lack = _auroc(scores[chosen], anomalous[chosen], f"auroc_{domain}")
                values[f"auroc_{domain}"] = result.get("auroc")
            else:
                in_domain = own & (domains == d)
                result, lack = _auroc(scores[in_domain], anomalous[in_domain], f"auroc_{domain}")
                values[f"auroc_{domain}"], values[f"pauc_{domain}"] = result.get("auroc"), result.get("pauc")
                if lack:
                    lack[f"pauc_{domain}"] = lack[f"auroc_{domain}"]
            shared = "anomalous" if evaluator == "dcase2022" else ""  # 2022-2025: anomalies of both domains
            missing.update({m: reason.replace("normal", f"{domain}-domain normal").replace(
                "anomalous", "anomalous" if shared else f"{domain}-domain anomalous") for m, reason in lack.items()})
        out[str(name)] = {**values, **({"missing": missing} if missing else {})}
    return out


def score_terms(per_section: dict[str, dict], evaluator: str = "dcase2022") -> list[str]:
    """The metrics of each section that the official score averages."""
    if evaluator == "dcase2021":
        return ["auroc_source", "auroc_target", "pauc_source", "pauc_target"]
    return ["auroc_source", "auroc_target", "pauc"]


def hmean_floored(values: list[float]) -> float:
    """The evaluators' harmonic mean: `scipy.stats.hmean(numpy.maximum(values, sys.float_info.epsilon))`."""
    floored = [max(float(v), EPSILON) for v in values]
    return len(floored) / sum(1.0 / v for v in floored)


def official_score(per_section: dict[str, dict], evaluator: str = "dcase2022") -> tuple[float | None, str]:
    """(score, '') or (None, why): the harmonic mean of every section's `score_terms`, floored at `EPSILON`."""
    terms = score_terms(per_section, evaluator)
    values, gaps = [], []
    for name, metrics in per_section.items():
        for term in terms:
            if metrics.get(term) is None:
                gaps.append(f"{term} of {name} ({metrics.get('missing', {}).get(term, 'not computed')})")
            else:
                values.append(metrics[term])
    if gaps or not values:
        return None, "missing " + "; ".join(gaps) if gaps else "no section was tested"
    return hmean_floored(values), ""


def summary_metrics(per_section: dict[str, dict], evaluator: str = "dcase2022") -> dict[str, float]:
    """The run's overall values: the arithmetic mean over sections of each metric (where computed), and the
    official score where every term of it was computed."""
    out: dict[str, float] = {}
    keys = dict.fromkeys(k for m in per_section.values() for k in m if k != "missing")
    for key in keys:
        values = [m[key] for m in per_section.values() if m.get(key) is not None]
        if values:
            out[key] = sum(values) / len(values)
    score, _ = official_score(per_section, evaluator)
    if score is not None:
        out["official_score"] = score
    return out
