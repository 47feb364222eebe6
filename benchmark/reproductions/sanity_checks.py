"""Sanity checks for saliency maps (Adebayo et al., NeurIPS 2018): cascading randomisation.

The paper re-initialises a trained network's layers one at a time from the output down and
compares each method's saliency map on the randomised network with the original map. Its
findings (Figs. 2 and 4, Sec. 4) are qualitative, so they are checked as claims:

- gradient and Grad-CAM are sensitive to the model: their maps decorrelate, ending at a low
  similarity once every layer is randomised;
- guided backprop is not: its maps stay highly similar to the original ones throughout. The
  authors' errata (their repository's README, arXiv v3) narrows this: guided backprop is
  invariant to the *higher* layers' weights, and randomising the lower layers does distort its
  map. That narrower claim is a row of its own: similarity after the dense (classifier) layers
  are randomised, before the first convolution is.

Protocol, as the authors' code has it (github.com/adebayoj/sanity_checks_saliency): the map of the
class the (randomised) model itself predicts, all pixels compared; similarity of the original and
the randomised map by Spearman rank correlation of absolute maps (the claims) and of signed maps,
SSIM with Gaussian weights (``structural_similarity(..., gaussian_weights=True)``) and Spearman of
the HOG features of the maps min-max scaled to [0, 1]. Their HOG cells are 16 px on Inception's
299 px inputs (about 19 cells a side); here 4 px on 28-32 px maps (7-8 a side, the finest that keeps
HOG's 3x3-cell blocks meaningful). Re-initialisation: each layer's own initialiser, as their
``tf.initialize_variables``; for PyTorch layers ``reset_parameters`` (the MPRT metric's cascade,
``benchmark.metrics.randomisation``, one seed per run).

Two networks, because the paper's Inception v3 on ImageNet is not available offline:

- ``LeNet/MNIST``: Quantus' pretrained LeNet (two 5x5 conv + ReLU + max pool stages, three dense
  layers; 5 cascade steps) on MNIST test images, read from ``$XAIBOARD_SHARED_DATA``
  (``mnist_lenet``). It is the kind of network of the authors' own MNIST replication
  (``notebooks/cnn_mnist_cascading_randomization.ipynb``: conv 5x5 + max pool twice, dense 1024,
  dense 10, TensorFlow initialisers), where their notebook reports, on 10 images, guided backprop at
  rank correlation .89 / .77 / .63 / .44 as the layers are randomised top down, gradient .60 / .40 /
  .11 / .08, Grad-CAM .56 / .34 / .29 / .30: guided backprop stays high through the dense layers,
  not through the convolutions. Without the data the setting's rows are ``skipped``.
- ``digits CNN``: the board's ``image/digits`` CNN (3 convs, global max pool, one linear layer; 4
  cascade steps) on its test images, always available.

Measured (64 images x 3 seeds, the record of ``xaiboard reproduce sanity-checks``): guided backprop
does *not* stay high through the whole cascade on either network, and the authors' narrower claim
holds on both. On the LeNet its rank correlation is .93 / .89 / .82 after the three dense layers,
then .72 (conv_2) and .66 (conv_1), the shape of the authors' own MNIST curve; on the digits CNN .71
after the head, then .57 / .48 / .31. At the end both sit at their ``floor`` (in the record: the
similarity of the maps of two independently randomised copies of the network, which no learned
weight explains): LeNet .63, digits CNN .34. Guided backprop partly reconstructs the input whatever
the weights (Nie et al., ICML 2018), so its end point is that floor, and "stays high" at the end
needs a floor above ``HIGH``. Random VGG-style CNNs (3x3 convs, max pool every two, PyTorch's
initialiser) put it at .42 / .47 / .56 with 2 / 4 / 8 convs on MNIST and .45-.49 with 2-13 convs on
64 px crops of scikit-learn's two sample photographs: deeper nets raise it, not past .7 here.
Ruled out as causes (measured with the label as the explained class): global max vs average
pooling (a global-average twin of the digits CNN trained by the same recipe ends at .24), the
re-initialiser (the TensorFlow truncated normal 0.1 / bias 0.1 of the authors' MNIST code ends
lower: digits CNN .17, LeNet .57), the explained class (label vs prediction: final values within
.02), the similarity (signed Spearman, SSIM and HOG fall as well). The data and the depth above the
convolutions matter: the digits CNN's architecture trained on MNIST ends at .50. The gradient's
all-pixel Spearman on the LeNet ends at .55 over a floor of .47 (the valid convolutions' border
geometry is shared by any LeNet; on the digit strokes alone it falls to ~.07), above ``LOW``.
Integrated gradients and input x gradient stay at ~.99 on the LeNet, as in the authors' notebook
(.99): on MNIST's black background (x = 0) their maps are exactly 0 in any network, ties that this
all-pixel protocol keeps and the board's ``mprt`` metric leaves out.

Thresholds (``LOW``, ``HIGH``) are our reading of "low" and "high" in the paper's figures, where
the gradient falls to rank correlations of about .1-.3 and guided backprop stays above about .8;
they are not tuned to either network. Methods are the board's own by registry name; each curve
(every similarity, every step) is saved in the record and drawn in one PNG beside it.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from skimage.feature import hog
from skimage.metrics import structural_similarity
from torch import Tensor, nn
from tqdm.auto import tqdm

import xaiboard.methods  # noqa: F401  (registers the methods named below)
import xaiboard.tasks  # noqa: F401  (registers image/digits)

from ..metrics.randomisation import cascading_randomisation, fully_randomised, randomisable_layers
from ..metrics.rank_correlation import spearman
from ..registry import METHODS, TASKS
from ..task import Task
from .base import REPRODUCTIONS, Cells, Measured, Published, Reproduction
from .mnist_lenet import LeNetMnist, missing

SAMPLES, QUICK_SAMPLES = 64, 8
#: "low" similarity after full randomisation (the paper's gradient: ~.1-.3 rank correlation)
LOW = 0.5
#: "high" similarity throughout (the paper's guided backprop: above ~.8)
HIGH = 0.7
FIGURE = "Figs. 2 and 4 (cascading randomisation)"
#: the similarities of the paper's Fig. 4, each a curve in the record
SIMILARITIES = ("spearman_abs", "spearman_signed", "ssim", "hog")
#: HOG cell size in pixels (module docstring)
HOG_CELL = 4
#: the paper's contrast (Fig. 2): guided backprop's maps change less than the gradient's
CONTRAST = ("guided_backprop", "saliency")
CONTRAST_ROW = "guided_backprop - saliency"
#: the paper's claims, by method: (claim text, check of the final similarity)
CLAIMS = {
    "saliency": (f"decays to low similarity (< {LOW})", lambda s: s < LOW),
    "gradcam": (f"decays to low similarity (< {LOW})", lambda s: s < LOW),
    "guided_backprop": (f"stays high (> {HIGH})", lambda s: s > HIGH),
}
ERRATA_CLAIM = f"stays high (> {HIGH}) while only the dense layers are randomised (the authors' errata)"
OTHER_METHODS = ("integrated_gradients", "input_x_gradient")
#: seed offsets of the two independently randomised copies whose similarity is the floor
FLOOR_SEEDS = (1000, 2000)


@dataclass(frozen=True)
class Setting:
    """One network the protocol runs on: its label in the table, the task that serves its model and
    images, and why it cannot run here (``None`` when it can)."""

    label: str
    task: Callable[[], Task]
    unavailable: Callable[[], str | None]
    #: why a failing claim fails on this network, by method (the record's reason)
    gaps: dict[str, str]


SETTINGS = (
    Setting("LeNet/MNIST", LeNetMnist, missing, {
        "saliency": "two independently randomised LeNets' gradient maps already agree at ~.47 over all pixels (the "
        "valid convolutions' border geometry); on the digit strokes alone the gradient falls to ~.07",
        "guided_backprop": "high through the dense layers (.82), then distorted by the convolutions (conv_2 .72, "
        "conv_1 .66), as the authors' own MNIST CNN (.44 at the end) and their errata say; the end point is the "
        "similarity of two unrelated random LeNets (.63): the paper's full invariance was drawn from Inception v3",
    }),
    Setting("digits CNN", lambda: TASKS.create("image/digits"), lambda: None, {
        "guided_backprop": "on this 3-conv CNN with global max pooling guided backprop falls from .71 (head) to .31, "
        "the similarity of two unrelated random copies (.34); neither the pooling (a global-average twin ends at "
        ".24) nor the initialiser explains it; the same architecture trained on MNIST ends at .50",
    }),
)


def final(setting: Setting) -> str:
    return f"spearman_abs, all layers randomised ({setting.label})"


def final_ssim(setting: Setting) -> str:
    return f"ssim, all layers randomised ({setting.label})"


def dense_only(setting: Setting) -> str:
    return f"spearman_abs, dense layers randomised ({setting.label})"


def published_cells(setting: Setting) -> tuple[Published, ...]:
    return (
        *(Published(method, final(setting), FIGURE, claim=claim) for method, (claim, _) in CLAIMS.items()),
        Published("guided_backprop", dense_only(setting), FIGURE, claim=ERRATA_CLAIM),
        Published(CONTRAST_ROW, final_ssim(setting), FIGURE, claim="guided backprop stays more similar than gradient (> 0)"),
    )


def scaled(maps: Tensor) -> np.ndarray:
    """``[B, H, W]`` maps min-max scaled to [0, 1] per map, as numpy (the authors' ``normalize_image``)."""
    low, high = maps.amin(dim=(1, 2), keepdim=True), maps.amax(dim=(1, 2), keepdim=True)
    return ((maps - low) / (high - low).clamp(min=1e-12)).numpy()


def similarities(original: Tensor, again: Tensor) -> dict[str, float]:
    """Mean over the batch of each of ``SIMILARITIES`` between signed maps ``[B, H, W]``."""
    every = torch.ones_like(original, dtype=torch.bool)
    a, b = scaled(original.abs()), scaled(again.abs())
    hogs = [(hog(x, pixels_per_cell=(HOG_CELL, HOG_CELL)), hog(y, pixels_per_cell=(HOG_CELL, HOG_CELL))) for x, y in zip(a, b)]
    hog_a, hog_b = (torch.tensor(np.stack(h)) for h in zip(*hogs))
    values = {
        "spearman_abs": spearman(original.abs(), again.abs(), every),
        "spearman_signed": spearman(original, again, every),
        "ssim": torch.tensor([structural_similarity(x, y, data_range=1.0, gaussian_weights=True) for x, y in zip(a, b)]),
        "hog": spearman(hog_a, hog_b, torch.ones_like(hog_a, dtype=torch.bool)),
    }
    return {k: float(torch.nan_to_num(v.double()).mean()) for k, v in values.items()}


def explain_own_class(method: str, task: Task, model: nn.Module, inputs: Tensor) -> Tensor:
    """The map of the class ``model`` predicts for each input, as the authors' notebooks explain it."""
    with torch.no_grad():
        predicted = model(inputs).argmax(dim=1)
    return METHODS.create(method).explain(model, inputs, predicted, task).detach()


def dense_steps(model: nn.Module) -> int:
    """How many cascade steps (top down) re-initialise dense layers before the first convolution."""
    units = [unit for _, unit in randomisable_layers(model)]
    return next(i for i, unit in enumerate(units) if not isinstance(unit, nn.Linear))


def cascade_curves(task: Task, method: str, seed: int, n: int) -> dict[str, list]:
    """Per layer randomised (top down): each similarity to the original map, averaged over ``n``
    images; ``floor``: the same similarities between two independently, fully randomised copies."""
    model, inputs = task.model(), task.samples("test", n, seed).inputs
    original = explain_own_class(method, task, model, inputs)
    layers, steps = [], []
    for name, randomised in cascading_randomisation(model, seed):
        layers.append(name)
        steps.append(similarities(original, explain_own_class(method, task, randomised, inputs)))
    one, other = (explain_own_class(method, task, fully_randomised(model, seed + s), inputs) for s in FLOOR_SEEDS)
    return {"layers": layers, "dense_steps": dense_steps(model), "floor": similarities(one, other),
            **{k: [step[k] for step in steps] for k in SIMILARITIES}}


def plot(curves: dict[str, dict[str, dict[str, list]]], path: Path) -> None:
    """Similarity vs layers randomised: a row per network, a panel per similarity, a line per method."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(len(curves), len(SIMILARITIES), figsize=(4 * len(SIMILARITIES), 3.5 * len(curves)),
                             sharey=True, squeeze=False)
    for row, (label, methods) in zip(axes, curves.items()):
        for ax, key in zip(row, SIMILARITIES):
            for method, curve in methods.items():
                steps = len(curve[key])
                (line,) = ax.plot(range(1, steps + 1), curve[key], marker="o", label=method)
                ax.plot([steps + 1], [curve["floor"][key]], marker="x", linestyle="none", color=line.get_color())
            ax.set_xticks(range(1, steps + 2), [*(f"+{name}" for name in curve["layers"]), "floor"], rotation=30)
            ax.set_title(f"{label}: {key}")
            ax.axhline(0, color="grey", lw=0.5)
        row[0].set_ylabel("similarity to the original map")
    axes[0][-1].legend()
    fig.suptitle("Cascading randomisation (layers randomised from the top; x: floor, two independently randomised copies)")
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=100, bbox_inches="tight")
    plt.close(fig)


@REPRODUCTIONS.register("sanity-checks")
class SanityChecks(Reproduction):
    name = "sanity-checks"
    paper = "Adebayo et al., Sanity Checks for Saliency Maps, NeurIPS 2018"
    table = FIGURE
    data = "MNIST test images (read from $XAIBOARD_SHARED_DATA/mnist-test); image/digits test images"
    model = ("Quantus' pretrained LeNet (MNIST) and the board's image/digits CNN (committed weights), layers "
             "re-initialised top down by their own initialisers")
    samples = f"{SAMPLES} test images per seed and network"
    metric = ("similarity of the map of the model's own predicted class to the original: Spearman of |map| (claims) "
              "and of the signed map, SSIM (Gaussian weights) and HOG Spearman, per layer randomised")
    published = tuple(cell for setting in SETTINGS for cell in published_cells(setting))
    registry_methods = (*CLAIMS, *OTHER_METHODS)
    default_seeds = 3
    known_gaps = {method: "the claim does not hold on this model" for method in (*CLAIMS, CONTRAST_ROW)}

    def measure(self, seeds: Sequence[int], quick: bool, progress: bool, out_dir: Path) -> Cells:
        n = QUICK_SAMPLES if quick else SAMPLES
        # --quick checks the claims only: the other methods' curves are not needed for them
        methods = [m for m in (CLAIMS if quick else self.registry_methods) if m in METHODS]
        runs: dict[str, dict[str, list[dict]]] = {}
        with tqdm(total=len(SETTINGS) * len(methods) * len(seeds), desc=self.name, disable=not progress) as bar:
            for setting in SETTINGS:
                if setting.unavailable() is not None:
                    bar.update(len(methods) * len(seeds))
                    continue
                task = setting.task()
                runs[setting.label] = {}
                for method in methods:
                    runs[setting.label][method] = [cascade_curves(task, method, seed, n) for seed in seeds]
                    bar.update(len(seeds))
        return self.pooled(runs, out_dir)

    def merge(self, parts: Sequence[Cells], quick: bool, out_dir: Path) -> Cells:
        """Seeds run apart: each seed's curve is its cells' evidence (a mean over one seed), pooled
        again as :meth:`measure` pools them, so the claims are checked on the mean over seeds."""
        runs: dict[str, dict[str, list[dict]]] = {}
        for setting in SETTINGS:
            methods = [m for (m, metric), cell in parts[0].items() if metric == final(setting) and cell.values]
            if methods:
                runs[setting.label] = {m: [part[(m, final(setting))].evidence["curve"] for part in parts] for m in methods}
        return self.pooled(runs, out_dir)

    def pooled(self, runs: dict[str, dict[str, list[dict]]], out_dir: Path) -> Cells:
        """The cells from each network's per-method, per-seed curves (a network missing from
        ``runs`` could not run here: its cells say why), and the plot of the mean curves."""
        measured: Cells = {}
        curves: dict[str, dict[str, dict[str, list]]] = {}
        for setting in SETTINGS:
            if setting.label not in runs:
                why = setting.unavailable() or "not measured"
                measured.update({(c.method, c.metric): Measured(reason=why) for c in published_cells(setting)})
                continue
            curves[setting.label] = {method: _mean_curve(r) for method, r in runs[setting.label].items()}
            measured.update(_cells(setting, runs[setting.label]))
        plot(curves, out_dir / f"{self.name}.png")
        return measured


def _cells(setting: Setting, runs: dict[str, list[dict[str, list]]]) -> dict[tuple[str, str], Measured]:
    """The setting's measured cells: final similarities per method, the claims' checks and the contrast."""
    cells: dict[tuple[str, str], Measured] = {}
    for method, seeds in runs.items():
        last = [run["spearman_abs"][-1] for run in seeds]
        check = CLAIMS.get(method, (None, None))[1]
        cells[(method, final(setting))] = Measured(values=last, holds=None if check is None else check(float(np.mean(last))),
                                                   evidence={"curve": _mean_curve(seeds)}, reason=setting.gaps.get(method, ""))
        cells[(method, final_ssim(setting))] = Measured(values=[run["ssim"][-1] for run in seeds])
    if "guided_backprop" in runs:
        dense = [run["spearman_abs"][run["dense_steps"] - 1] for run in runs["guided_backprop"]]
        cells[("guided_backprop", dense_only(setting))] = Measured(values=dense, holds=float(np.mean(dense)) > HIGH,
                                                                   reason=setting.gaps.get("guided_backprop", ""))
    if all(m in runs for m in CONTRAST):
        gap = np.subtract(*(cells[(m, final_ssim(setting))].values for m in CONTRAST)).tolist()
        cells[(CONTRAST_ROW, final_ssim(setting))] = Measured(values=gap, holds=float(np.mean(gap)) > 0)
    return cells


def _mean_curve(runs: list[dict]) -> dict:
    """The seeds' curves (and floors) averaged point by point (the layers are the same in every run)."""
    floor = {k: float(np.mean([r["floor"][k] for r in runs])) for k in SIMILARITIES}
    return {"layers": runs[0]["layers"], "dense_steps": runs[0]["dense_steps"], "floor": floor,
            **{k: np.mean([r[k] for r in runs], axis=0).tolist() for k in SIMILARITIES}}
