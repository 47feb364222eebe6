"""Sanity checks for saliency maps (Adebayo et al., NeurIPS 2018): cascading randomisation.

The paper re-initialises a trained network's layers one at a time from the output down and
compares each method's saliency map on the randomised network with the original map. Its
findings (Figs. 2 and 4, Sec. 4) are qualitative, so they are checked as claims:

- gradient and Grad-CAM are sensitive to the model: their maps decorrelate, ending at a low
  similarity once every layer is randomised;
- guided backprop is not: its maps stay highly similar to the original ones throughout.

Protocol here: the board's ``image/digits`` CNN (conv, conv, conv, linear: 4 cascade steps) and
its test images; the cascade and the re-initialisation are the MPRT metric's
(``benchmark.metrics.randomisation``: PyTorch's default initialisation, one seed per run);
similarity as in the paper, Spearman rank correlation of absolute maps and SSIM of the absolute
maps scaled to [0, 1] per image (scikit-image). A claim's threshold (``LOW``, ``HIGH``) is our
reading of "low" and "high" in the paper's figures, where gradient falls to rank correlations
of about .1-.3 and guided backprop stays above about .8.

Methods are the board's own (``saliency``, ``gradcam``, ``guided_backprop``, ``integrated_gradients``,
``input_x_gradient``) by registry name; each curve is saved as data in the record and drawn in
one PNG beside it.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
from skimage.metrics import structural_similarity
from torch import Tensor
from tqdm.auto import tqdm

import xaiboard.methods  # noqa: F401  (registers the methods named below)
import xaiboard.tasks  # noqa: F401  (registers image/digits)

from ..metrics.randomisation import cascading_randomisation
from ..metrics.rank_correlation import spearman
from ..registry import METHODS, TASKS
from .base import REPRODUCTIONS, Cells, Measured, Published, Reproduction

TASK = "image/digits"
SAMPLES, QUICK_SAMPLES = 64, 8
#: "low" similarity after full randomisation (the paper's gradient: ~.1-.3 rank correlation)
LOW = 0.5
#: "high" similarity throughout (the paper's guided backprop: above ~.8)
HIGH = 0.7
FIGURE = "Figs. 2 and 4 (cascading randomisation)"
FINAL = "spearman_abs, all layers randomised"
FINAL_SSIM = "ssim, all layers randomised"
#: the paper's contrast (Fig. 2): guided backprop's maps change less than the gradient's
CONTRAST = ("guided_backprop", "saliency")
CONTRAST_ROW = "guided_backprop - saliency"
#: the paper's claims, by method: (claim text, check of the final similarity)
CLAIMS = {
    "saliency": (f"decays to low similarity (< {LOW})", lambda s: s < LOW),
    "gradcam": (f"decays to low similarity (< {LOW})", lambda s: s < LOW),
    "guided_backprop": (f"stays high (> {HIGH})", lambda s: s > HIGH),
}
OTHER_METHODS = ("integrated_gradients", "input_x_gradient")


def ssim(a: Tensor, b: Tensor) -> Tensor:
    """SSIM ``[B]`` of two batches of maps ``[B, H, W]``, each map min-max scaled to [0, 1]."""
    scale = lambda m: (m - m.amin(dim=(1, 2), keepdim=True)) / (m.amax(dim=(1, 2), keepdim=True) - m.amin(dim=(1, 2), keepdim=True)).clamp(min=1e-12)  # noqa: E731
    a, b = scale(a).numpy(), scale(b).numpy()
    return torch.tensor([structural_similarity(x, y, data_range=1.0) for x, y in zip(a, b)])


def cascade_curves(method: str, seed: int, n: int) -> dict[str, list]:
    """Per layer randomised (top down): mean Spearman of absolute maps and mean SSIM."""
    task = TASKS.create(TASK)
    model, batch = task.model(), task.samples("test", n, seed)
    explainer = METHODS.create(method)
    original = explainer.explain(model, batch.inputs, batch.targets, task).detach().abs()
    layers, rho, structure = [], [], []
    for name, randomised in cascading_randomisation(model, seed):
        again = explainer.explain(randomised, batch.inputs, batch.targets, task).detach().abs()
        layers.append(name)
        rho.append(float(torch.nan_to_num(spearman(original, again, batch.valid)).mean()))
        structure.append(float(ssim(original, again).mean()))
    return {"layers": layers, "spearman_abs": rho, "ssim": structure}


def plot(curves: dict[str, dict[str, list]], path: Path) -> None:
    """Similarity vs layers randomised, one line per method, Spearman and SSIM side by side."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(10, 4), sharey=True)
    for ax, key in zip(axes, ("spearman_abs", "ssim")):
        for method, curve in curves.items():
            ax.plot(range(1, len(curve[key]) + 1), curve[key], marker="o", label=method)
        ax.set_xticks(range(1, len(curve["layers"]) + 1), [f"+{name}" for name in curve["layers"]])
        ax.set_title(key)
        ax.axhline(0, color="grey", lw=0.5)
    axes[0].set_ylabel("similarity to the original map")
    axes[1].legend()
    fig.suptitle(f"Cascading randomisation on {TASK} (layers randomised from the top)")
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=100, bbox_inches="tight")
    plt.close(fig)


@REPRODUCTIONS.register("sanity-checks")
class SanityChecks(Reproduction):
    name = "sanity-checks"
    paper = "Adebayo et al., Sanity Checks for Saliency Maps, NeurIPS 2018"
    table = FIGURE
    data = f"{TASK} test images"
    model = f"the board's {TASK} CNN (committed weights), layers re-initialised top down"
    samples = f"{SAMPLES} test images per seed"
    metric = "similarity of |map| to the original: Spearman rank correlation and SSIM, per layer randomised"
    published = (
        *(Published(method, FINAL, FIGURE, claim=claim) for method, (claim, _) in CLAIMS.items()),
        Published(CONTRAST_ROW, FINAL_SSIM, FIGURE, claim="guided backprop stays more similar than gradient (> 0)"),
    )
    registry_methods = (*CLAIMS, *OTHER_METHODS)
    default_seeds = 3
    known_gaps = {
        **{method: "the claim does not hold on this model" for method in CLAIMS},
        "guided_backprop": "on this 3-conv CNN with global max pooling guided backprop decorrelates about as "
        "much as the gradient (Spearman); only SSIM keeps it above the gradient. The paper's invariance was "
        "shown on deep networks (Inception v3), where guided backprop largely reconstructs the image",
    }

    def measure(self, seeds: Sequence[int], quick: bool, progress: bool, out_dir: Path) -> dict[tuple[str, str], Measured]:
        n = QUICK_SAMPLES if quick else SAMPLES
        # --quick checks the claims only: the other methods' curves are not needed for them
        methods = [m for m in (CLAIMS if quick else self.registry_methods) if m in METHODS]
        runs: dict[str, list[dict[str, list]]] = {method: [] for method in methods}
        with tqdm(total=len(methods) * len(seeds), desc=self.name, disable=not progress) as bar:
            for method in methods:
                for seed in seeds:
                    runs[method].append(cascade_curves(method, seed, n))
                    bar.update()
        return self.pooled(runs, out_dir)

    def merge(self, parts: Sequence[Cells], quick: bool, out_dir: Path) -> Cells:
        """Seeds run apart: each seed's curve is its cell's evidence (a mean over one seed), pooled
        again as :meth:`measure` pools them, so the claims are checked on the mean over seeds."""
        methods = [method for method, metric in parts[0] if metric == FINAL]
        return self.pooled({method: [part[(method, FINAL)].evidence["curve"] for part in parts] for method in methods}, out_dir)

    def pooled(self, runs: dict[str, list[dict[str, list]]], out_dir: Path) -> Cells:
        """The cells from each method's per-seed curves: final similarities per seed, claims and
        evidence on the curves averaged over the seeds, which are also plotted."""
        measured: Cells = {}
        curves: dict[str, dict[str, list]] = {}
        for method, method_runs in runs.items():
            curves[method] = _mean_curve(method_runs)
            final = [run["spearman_abs"][-1] for run in method_runs]
            check = CLAIMS.get(method, (None, None))[1]
            measured[(method, FINAL)] = Measured(values=final, holds=None if check is None else check(float(np.mean(final))),
                                                 evidence={"curve": curves[method]})
            measured[(method, FINAL_SSIM)] = Measured(values=[run["ssim"][-1] for run in method_runs])
        if all(m in runs for m in CONTRAST):
            gap = np.subtract(*(measured[(m, FINAL_SSIM)].values for m in CONTRAST)).tolist()
            measured[(CONTRAST_ROW, FINAL_SSIM)] = Measured(values=gap, holds=float(np.mean(gap)) > 0)
        plot(curves, out_dir / f"{self.name}.png")
        return measured


def _mean_curve(runs: list[dict[str, list]]) -> dict[str, list]:
    """The seeds' curves averaged point by point (the layers are the same in every run)."""
    return {"layers": runs[0]["layers"], **{k: np.mean([r[k] for r in runs], axis=0).tolist() for k in ("spearman_abs", "ssim")}}
