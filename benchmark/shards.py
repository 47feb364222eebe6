"""Sharding a pair's samples (``xaiboard run --executor ray --shard-samples K``).

A (task, method, seed) pair whose batch has more than ``K`` samples is computed in steps, each
one Ray task (``distributed.RayExecutor``) that loads the task and model itself:

1. :func:`explain_pair` explains the *whole* batch once (or reads it from its cache) and returns
   the explanation and its cost. Explaining each shard on its own would be exact only for
   methods that explain every sample independently and draw nothing random (LIME, RISE,
   SmoothGrad, the random control, PGExplainer's training all see the batch), and explaining is
   a small share of the long pairs (``docs/scaling.md``: 34 of 1,194 s for ``text/sst2`` x
   integrated gradients), so it is not split.
2. :func:`shard_pair`, once per shard of at most ``K`` contiguous samples (in the run's sample
   order), scores the *sharded* metrics on those samples from their rows of that explanation,
   and returns per-sample scores without summaries.
3. :func:`rest_pair` scores the pair's other metrics on the whole batch, as a serial run does.

The driver merges the shards (:func:`merge`) into exactly the records a serial run writes: the
same keys, pair fields and sample ids, the scores concatenated in sample order, the summary and
its bootstrap CI computed from the merged scores with the run's seed, ``details`` combined by
:data:`DETAIL_MERGE`, ``cost`` the whole-batch explanation's per sample, and ``metric_cost`` the
sum of the shards' seconds and passes (work a shard shares between metrics is counted once per
shard, as a serial run counts it once per batch). Only then does it write them.

**Which metrics are sharded.** A metric is sharded only where a sample's score cannot depend on
the other samples of the batch, so that the shard boundaries change no score; every built-in
metric was checked (:func:`unsharded_reason` says why one is not):

- :data:`SEPARABLE`: the score reads only the sample's explanation, inputs, ground truth and
  model outputs, through the task's deterministic removal operator (model outputs on rows
  chunked differently differ by float round-off, ~1e-7, which these scores carry through
  continuously: equal to 1e-6);
- :data:`SEPARABLE_RERUNS`, only with ``reruns`` (``--shard-reruns``): separable too, but they
  re-run the method (on a model randomised with a seed that does not depend on the batch, or
  for another class), and only for the built-in methods in :data:`PER_SAMPLE_METHODS`, which
  explain every sample on its own and draw nothing random. Even then a shard's re-explanation
  is the model's computation on a batch of another size, whose float32 round-off differs (up
  to ~2e-7 on image/digits' saliency maps), and these rank-based scores turn a near tie swapped
  by it into a step of a tied pair's rank (MPRT moved by 2e-6 on one of 5 digits samples): equal
  to the serial records up to that, not to the last digit, hence opt-in. They are most of the
  long text pairs' time (MPRT: 554 of 1,194 s of ``text/sst2`` x integrated gradients);
- not sharded: metrics that draw random perturbations from one seeded generator in tensors
  shaped by the batch (ROAD, faithfulness correlation, infidelity, robust fidelity, random
  logit, smooth MPRT, the sensitivity and stability metrics), so a sample's draw depends on its
  position and on the batch size; the cost metrics, whose value is the batch's explanation
  cost averaged over the batch; and any metric this module does not know (a plugin's), unless
  its class declares ``shard_exact = True`` (and has no ``details``).

Every built-in task's removal operator and model act on each sample alone (image removal
imputes a constant, a blur of the image itself or a train-split mean), which all of this
assumes; a plugin task whose removal or model mixed the samples of a batch must not be sharded.
Metric code is not changed to make more metrics shardable: each metric module's source hash
keys the committed records.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, replace
from typing import Any

import torch

from xaiboard.methods.base import Explainer

from .cache import CachedExplanation
from .example_inputs import crop, sample_range
from .metric import Metric
from .record import METRIC_COST_FIELDS, ResultRecord
from .registry import METHODS, METRICS, Registry
from .runner import PairWork, Run, _Loaded, metric_failure

log = logging.getLogger(__name__)

#: built-in metrics whose score of a sample reads that sample only (checked by hand, module by module)
SEPARABLE = frozenset({
    "deletion_auc", "insertion_auc", "abpc", "complexity", "sparseness", "gt_auroc", "gt_auprc",
    "relevance_rank_accuracy", "relevance_mass_accuracy", "pointing_game", "grid_pointing_game",
    "token_f1", "iou_f1", "comprehensiveness", "sufficiency", "fidelity_plus", "fidelity_minus",
    "characterization_score", "unfaithfulness", "monotonicity_correlation",
})  # fmt: skip
#: built-in metrics that are separable but re-run the method: sharded for PER_SAMPLE_METHODS only
SEPARABLE_RERUNS = frozenset({"mprt", "efficient_mprt", "class_sensitivity"})
#: built-in methods whose explanation of a sample depends on that sample only and on no random draw
PER_SAMPLE_METHODS = frozenset({
    "saliency", "input_x_gradient", "integrated_gradients", "occlusion", "feature_ablation", "deeplift",
    "guided_backprop", "deconvolution", "gradcam", "gradcam_pp", "input_magnitude",
})  # fmt: skip
BATCH_DRAWS = "it draws random perturbations in tensors shaped by the batch, so a sample's draw depends on the shard"
BATCH_COST = "its score is the batch's explanation cost averaged over the batch"
RERUN = ("it re-runs the method on the shard, whose float round-off differs from the batch's and can swap near ties "
         "(shard it anyway with --shard-reruns)")
#: why a built-in metric outside SEPARABLE and SEPARABLE_RERUNS is not sharded
REASONS = {
    **dict.fromkeys((
        "road_morf", "road_lerf", "faithfulness_correlation", "infidelity", "infidelity_raw", "robust_fidelity_plus",
        "robust_fidelity_minus", "random_logit", "smooth_mprt", "max_sensitivity", "avg_sensitivity",
        "local_lipschitz", "relative_input_stability", "relative_output_stability",
    ), BATCH_DRAWS),
    "cost_passes": BATCH_COST,
    "cost_seconds": BATCH_COST,
}  # fmt: skip
#: how the shards' ``details`` combine: ``mean`` weighted by shard size, ``min``, ``max`` (MPRT's
#: share of features left out: its mean, min and max over samples)
DETAIL_MERGE = {"excluded_share": "mean", "excluded_share_min": "min", "excluded_share_max": "max"}


@dataclass
class Explained:
    """A sharded pair's first step: its record fields (from the worker's load) and explanation."""

    pair: dict[str, Any]
    entry: CachedExplanation


def spans(n: int, size: int) -> list[tuple[int, int]]:
    """``[start, stop)`` of each shard: contiguous runs of at most ``size`` of ``n`` samples."""
    return [(start, min(start + size, n)) for start in range(0, n, size)]


def split(work: PairWork, reruns: bool = False) -> tuple[list[Metric], list[Metric]]:
    """The pair's metrics that are sharded (with ``reruns``, also SEPARABLE_RERUNS where the
    method allows), and the others (logged with the reason)."""
    sharded, rest = [], []
    for metric in work.metrics:
        reason = unsharded_reason(metric, work.explainer, reruns)
        (rest if reason else sharded).append(metric)
        if reason:
            log.info("%s on %s: %s runs unsharded: %s", work.explainer.name, work.task.name, metric.name, reason)
    return sharded, rest


def unsharded_reason(metric: Metric, explainer: Explainer, reruns: bool = False) -> str | None:
    """Why ``metric`` of ``explainer``'s pair is not sharded, or ``None`` when it is (see the
    module docstring; ``reruns``: ``--shard-reruns``)."""
    if _builtin(METRICS, metric):
        if metric.name in SEPARABLE:
            return None
        if metric.name not in SEPARABLE_RERUNS:
            return REASONS.get(metric.name, "it is not known to score each sample on its own")
    elif not getattr(metric, "shard_exact", False) or hasattr(metric, "details"):
        return "it does not declare shard_exact = True (without details)"
    if metric.needs_explainer and not reruns:
        return RERUN
    if metric.needs_explainer and not (_builtin(METHODS, explainer) and explainer.name in PER_SAMPLE_METHODS):
        return f"it re-runs {explainer.name}, which is not known to explain each sample on its own without random draws"
    return None


def _builtin(registry: Registry, item: Metric | Explainer) -> bool:
    """Whether ``item`` is the class registered under its name (not a plugin's or submission's)."""
    return item.name in registry and type(item) is registry.factory(item.name)


def explain_pair(job: Run, work: PairWork) -> Explained | list[ResultRecord]:
    """Step 1 (a worker): the whole batch's explanation, or the pair's records when its method
    does not apply or failed."""
    loaded = job.load(work.task)
    work = replace(work, pair=job.pair_fields(work.task, work.explainer, loaded))
    entry = job.explained(work, loaded)
    if not isinstance(entry, CachedExplanation):
        return entry
    return Explained(work.pair, CachedExplanation(entry.explanation.cpu(), entry.cost))


def shard_pair(job: Run, work: PairWork, explained: Explained, start: int, stop: int) -> list[ResultRecord]:
    """Step 2 (a worker): ``work``'s metrics on samples ``start .. stop - 1``, unsummarised."""
    loaded = _reloaded(job, work, explained)
    batch = sample_range(work.task, loaded.batch, start, stop)
    rows = crop(explained.entry.explanation[start:stop], batch.valid.shape)
    part = replace(loaded, batch=batch, sample_ids=loaded.sample_ids[start:stop])
    entry = CachedExplanation(rows, explained.entry.cost)
    return replace(job, summarise=False).metrics(replace(work, pair=explained.pair), part, entry, {})


def rest_pair(job: Run, work: PairWork, explained: Explained) -> list[ResultRecord]:
    """Step 3 (a worker): ``work``'s metrics on the whole batch, from the explanation of step 1."""
    loaded = _reloaded(job, work, explained)
    return job.metrics(replace(work, pair=explained.pair), loaded, explained.entry, {})


def _reloaded(job: Run, work: PairWork, explained: Explained) -> _Loaded:
    """The task loaded again in this worker; it must give the samples step 1 explained."""
    loaded = job.load(work.task)
    if loaded.sample_ids != explained.pair["sample_ids"] or loaded.fingerprint != explained.pair["task_fingerprint"]:
        raise RuntimeError(f"{work.task.name} loaded other samples or another model than the worker that explained them")
    return loaded


def merge(job: Run, work: PairWork, explained: Explained, parts: list[list[ResultRecord]]) -> list[ResultRecord]:
    """The sharded metrics' records, as a serial run writes them, from the shards' in sample
    order; written to ``job.store`` (the driver's)."""
    n = len(explained.pair["sample_ids"])
    cost = explained.entry.cost.per_sample(n) if work.explainer.rerunnable else {}
    by_metric = [{r.metric: r for r in part} for part in parts]
    return [_merged(job, explained.pair, metric, [part[metric.name] for part in by_metric], cost) for metric in work.metrics]


def _merged(job: Run, pair: dict[str, Any], metric: Metric, parts: list[ResultRecord], cost: dict[str, Any]) -> ResultRecord:
    """One metric's record from its shards' records: the first shard that did not score (not
    applicable, or an error) decides it; else the scores are concatenated and summarised."""
    spent = {name: sum(p.metric_cost[name] for p in parts) for name in METRIC_COST_FIELDS}
    other = next((p for p in parts if p.status != "ok"), None)
    if other is not None and other.status == "not-applicable":
        return job.write(pair, metric, status="not-applicable", reason=other.reason)
    if other is not None:
        return job.write(pair, metric, cost=cost, metric_cost=spent, status="error", error=other.error, traceback=other.traceback)
    scores = torch.tensor([s for p in parts for s in p.scores], dtype=torch.float64)
    try:
        outcome = job.scored(scores, merged_details(parts))
    except Exception as exc:  # noqa: BLE001  (as Run.evaluate: no finite score at all is an error record)
        outcome = metric_failure(metric, pair, exc)
    return job.write(pair, metric, cost=cost, metric_cost=spent, **outcome)


def merged_details(parts: list[ResultRecord]) -> dict[str, float]:
    """The shards' ``details`` combined by :data:`DETAIL_MERGE` (NaN propagates, as over a batch)."""
    sizes = torch.tensor([len(p.scores) for p in parts], dtype=torch.float64)
    merged = {}
    for name in parts[0].details:
        values = torch.tensor([float("nan") if p.details[name] is None else p.details[name] for p in parts], dtype=torch.float64)
        rule = DETAIL_MERGE[name]
        merged[name] = float((values * sizes).sum() / sizes.sum() if rule == "mean" else getattr(values, rule)())
    return merged
