"""``text/sst2``: sentence sentiment (SST-2, GLUE) with the real all-MiniLM-L6-v2 encoder.

Data: the hub dataset ``stanfordnlp/sst2``. Its train split (67,349 phrases) trains the model;
its validation split (the 872 labelled GLUE dev sentences) is the task's ``test`` split, since the
hub's test labels are hidden (-1). There is no ground truth: SST's phrase-level sentiment labels
are not token rationales, so ground-truth metrics do not apply to this task.

Model: MiniLM fine-tuned with BitFit (biases and LayerNorms) plus a linear head on the mean-pooled
states: frozen MiniLM + logistic regression reaches only ~79-81 % on these sentences.
"""

from __future__ import annotations

from functools import cache
from typing import Any, ClassVar

import torch
from torch import Tensor, nn
from xaiboard.benchmark.registry import TASKS
from xaiboard.benchmark.task import TaskCard

from .hub import load_hub_dataset
from .minilm import HUB_MODEL, MiniLMTask
from .weights import torch_threads, weights_meta

REPO = "stanfordnlp/sst2"
#: the commit that converted the dataset to parquet (``data/{split}-00000-of-00001.parquet``)
REVISION = "f817a2b0170bf1822262d6198427436189c07d04"
HUB_SPLITS = {"train": "train", "test": "validation"}
STEM = "text_sst2"


@cache
def _split(split: str) -> tuple[tuple[str, ...], Tensor]:
    if split not in HUB_SPLITS:
        raise ValueError(
            f"text/sst2: unknown split {split!r}; expected one of {tuple(HUB_SPLITS)}"
        )
    data = load_hub_dataset(REPO, REVISION, HUB_SPLITS[split])
    return tuple(data["sentence"]), torch.tensor(data["label"])


@TASKS.register("text/sst2")
class SST2(MiniLMTask):
    """Binary sentence sentiment; features = wordpieces; no ground truth."""

    name = "text/sst2"
    version = "1"
    num_classes = 2
    class_names = ("negative", "positive")
    weights_stem = STEM
    bitfit = True
    max_length = (
        66  # wordpieces incl. [CLS]/[SEP]; the longest validation sentence has 55
    )
    recipe: ClassVar[dict[str, Any]] = {
        "steps": 300,
        "batch_size": 32,
        "lr": 1e-3,
        "weight_decay": 0.0,
        "threads": 1,
    }
    card = TaskCard(
        dataset=f"{REPO} (SST-2, GLUE): movie-review sentences, negative/positive",
        dataset_revision=REVISION,
        model=f"{HUB_MODEL} (6-layer MiniLM, real weights) fine-tuned with BitFit (biases + LayerNorms) "
        "+ linear head on the mean-pooled token states",
        feature_space=f"wordpieces of the sentence ([CLS]/[SEP]/padding excluded), padded to {max_length}",
        removal="mask-token: removed wordpieces become [MASK]",
        removal_baseline="[CLS] [MASK] ... [MASK] [SEP]: every wordpiece masked, the sentence's length kept",
        ground_truth="none (SST-2 has sentence labels, not token rationales)",
        licence="SST: research use (Socher et al. 2013); MiniLM: Apache-2.0",
        splits="the model trained on random batches of the hub's train split (67,349 phrases); evaluated on "
        "the hub's validation split (872 sentences), the task's 'test' split; the hub's test labels are hidden",
        test_accuracy=weights_meta(STEM).get("test_accuracy"),
        notes="revision = the hub commit that converted the data to parquet, read from its commit page; "
        "not checked against the hub offline",
    )

    def texts(self, split: str) -> tuple[list[str], Tensor]:
        sentences, labels = _split(split)
        return list(sentences), labels

    def train_model(
        self, seed: int = 0, device: torch.device | str = "cpu"
    ) -> tuple[nn.Module, float]:
        """AdamW on the biases, LayerNorms and head, over seeded random batches of the train split."""
        r = self.recipe
        texts, labels = self.texts("train")
        g = torch.Generator().manual_seed(seed)
        with torch.random.fork_rng(devices=[]), torch_threads(r["threads"]):
            torch.manual_seed(seed)
            model = self.build_model().to(device).train()
            params = [
                p for name, p in model.named_parameters() if model.is_committed(name)
            ]
            for name, p in model.named_parameters():
                p.requires_grad_(model.is_committed(name))
            optimiser = torch.optim.AdamW(
                params, lr=r["lr"], weight_decay=r["weight_decay"]
            )
            schedule = torch.optim.lr_scheduler.OneCycleLR(
                optimiser, max_lr=r["lr"], total_steps=r["steps"]
            )
            for _ in range(r["steps"]):
                idx = torch.randint(0, len(texts), (r["batch_size"],), generator=g)
                inputs = self.encode([texts[i] for i in idx.tolist()]).to(device)
                loss = nn.functional.cross_entropy(
                    self.logits(model, inputs), labels[idx].to(device)
                )
                optimiser.zero_grad()
                loss.backward()
                optimiser.step()
                schedule.step()
        model.eval().requires_grad_(True)
        test = self.samples("test", len(self.texts("test")[0]), seed=0).to(device)
        return model, self.accuracy(model, test)
