"""``text/movie-rationales``: review sentiment with human rationales (ERASER movies).

Data: the hub dataset ``eraser-benchmark/movie_rationales`` (Pang & Lee reviews, Zaidan et al.
rationales, ERASER splits 1,600/200/199). Its ``main`` branch holds a loading script, which
``datasets`` >= 4 no longer runs, so the task reads the hub's parquet export of it
(``refs/convert/parquet``: ``default/{split}/0000.parquet``).

Features: the review's wordpieces, capped at ``CHUNKS`` chunks of 254 (1,016 wordpieces: the whole
review for 72 % of the test reviews, roughly its first 850 words otherwise). The review is cut into
consecutive chunks ``[CLS] 254 wordpieces [SEP]`` that MiniLM encodes separately (its window is 256);
the mean pool runs over every token of every chunk.

Ground truth: the human rationale tokens. The hub gives rationales as strings (the annotated
token spans joined by spaces), not offsets. Reviews are already tokenised (words separated by
spaces), so a rationale is located as its word sequence in the review's word sequence; every
occurrence is marked (a short rationale can match elsewhere too: measured on the test split, the
marked words agree with ERASER's token offsets on > 99.9 % of words). ERASER's test rationales are
comprehensive: ~31 % of a test review's words. A wordpiece is ground truth when
its word is.
"""

from __future__ import annotations

import re
from bisect import bisect_right
from functools import cache
from typing import Any, ClassVar

import torch
from torch import Tensor, nn
from xaiboard.benchmark.registry import TASKS
from xaiboard.benchmark.task import Batch, TaskCard

from .hub import load_hub_dataset
from .minilm import HUB_MODEL, WINDOW, MiniLMTask
from .text import TextInputs
from .weights import load_weights, torch_threads, weights_meta

REPO = "eraser-benchmark/movie_rationales"
REVISION = "refs/convert/parquet"
SPLITS = ("train", "validation", "test")
CHUNKS = 4
PER_CHUNK = WINDOW - 2
STEM = "text_movie_rationales"


@cache
def _split(split: str) -> tuple[tuple[str, ...], Tensor, tuple[tuple[str, ...], ...]]:
    if split not in SPLITS:
        raise ValueError(
            f"text/movie-rationales: unknown split {split!r}; expected one of {SPLITS}"
        )
    data = load_hub_dataset(REPO, REVISION, split)
    return (
        tuple(data["review"]),
        torch.tensor(data["label"]),
        tuple(tuple(e) for e in data["evidences"]),
    )


def rationale_words(
    review: str, evidences: tuple[str, ...]
) -> tuple[list[int], list[bool]]:
    """Start offsets of the review's whitespace words, and which words lie in a rationale
    (every occurrence of each rationale's word sequence)."""
    spans = [m.span() for m in re.finditer(r"\S+", review)]
    words = [review[a:b] for a, b in spans]
    marked = [False] * len(words)
    for evidence in evidences:
        target = evidence.split()
        k = len(target)
        for i in range(len(words) - k + 1):
            if k and words[i : i + k] == target:
                marked[i : i + k] = [True] * k
    return [a for a, _ in spans], marked


@TASKS.register("text/movie-rationales")
class MovieRationales(MiniLMTask):
    """Binary review sentiment; features = wordpieces of the (capped) review; ground truth =
    the human rationales."""

    name = "text/movie-rationales"
    version = "1"
    num_classes = 2
    class_names = ("negative", "positive")
    has_ground_truth = True
    weights_stem = STEM
    bitfit = True
    max_length = CHUNKS * WINDOW
    recipe: ClassVar[dict[str, Any]] = {
        "encoder": "text/sst2 committed weights (BitFit biases + LayerNorms)",
        "n_train": 200,
        "train_seed": 0,
        "weight_decay": 1e-3,
        "lbfgs_steps": 200,
        "threads": 1,
    }
    card = TaskCard(
        dataset=f"{REPO} (ERASER movies: Pang & Lee reviews with Zaidan et al. rationales), NEG/POS",
        dataset_revision=REVISION,
        model=f"{HUB_MODEL} with the text/sst2 task's BitFit biases + LayerNorms, over {CHUNKS} chunks "
        f"of {WINDOW} tokens, mean-pooled; linear head (logistic regression) trained here",
        feature_space=f"wordpieces of the review, capped at {CHUNKS * PER_CHUNK} ([CLS]/[SEP]/padding excluded)",
        removal="mask-token: removed wordpieces become [MASK]",
        removal_baseline="every chunk [CLS] [MASK] ... [MASK] [SEP]: all wordpieces masked, the review's length kept",
        ground_truth="wordpieces of the human rationale words (rationale strings matched as word sequences)",
        licence="ERASER / Zaidan et al.: research use, no explicit licence; MiniLM: Apache-2.0",
        splits="the head trained on a seeded subset of 200 train reviews (the encoder's BitFit parameters "
        "come from text/sst2, trained on SST-2 only); evaluated on the 199 test reviews",
        test_accuracy=weights_meta(STEM).get("test_accuracy"),
        notes="revision = the hub's parquet-export branch (no commit SHA verifiable offline)",
    )

    def texts(self, split: str) -> tuple[list[str], Tensor]:
        reviews, labels, _ = _split(split)
        return list(reviews), labels

    # ---- data ----------------------------------------------------------------------------
    def layout(
        self, review: str, evidences: tuple[str, ...] = ()
    ) -> tuple[list[int], list[bool]]:
        """Token ids in chunks ``[CLS] 254 wordpieces [SEP]`` (only the last chunk is shorter, so
        chunk ``c`` starts at position ``c * WINDOW``) and, per position, whether it is a rationale
        wordpiece."""
        tok = self.tokenizer
        enc = tok(review, add_special_tokens=False, return_offsets_mapping=True)
        starts, marked = rationale_words(review, evidences)
        pieces = enc["input_ids"][: CHUNKS * PER_CHUNK]
        in_rationale = [
            marked[bisect_right(starts, a) - 1]
            for a, _ in enc["offset_mapping"][: len(pieces)]
        ]
        ids: list[int] = []
        truth: list[bool] = []
        for start in range(0, len(pieces), PER_CHUNK):
            ids += [
                tok.cls_token_id,
                *pieces[start : start + PER_CHUNK],
                tok.sep_token_id,
            ]
            truth += [False, *in_rationale[start : start + PER_CHUNK], False]
        return ids, truth

    def encode(self, texts: list[str]) -> TextInputs:
        return self._tensors([self.layout(t) for t in texts])[0]

    def _tensors(
        self, layouts: list[tuple[list[int], list[bool]]]
    ) -> tuple[TextInputs, Tensor]:
        ids = torch.full((len(layouts), self.max_length), self.tokenizer.pad_token_id)
        truth = torch.zeros(len(layouts), self.max_length, dtype=torch.bool)
        for row, (i, t) in enumerate(layouts):
            ids[row, : len(i)] = torch.tensor(i)
            truth[row, : len(t)] = torch.tensor(t, dtype=torch.bool)
        return TextInputs(ids, (ids != self.tokenizer.pad_token_id).long()), truth

    def batch(self, split: str, rows: Tensor) -> Batch:
        reviews, labels, evidences = _split(split)
        inputs, truth = self._tensors(
            [self.layout(reviews[i], evidences[i]) for i in rows.tolist()]
        )
        return Batch(
            inputs, labels[rows], labels[rows], self.valid_features(inputs), truth, rows
        )

    # ---- model ---------------------------------------------------------------------------
    @torch.no_grad()
    def pooled_states(self, model: nn.Module, batch: Batch, rows: int = 8) -> Tensor:
        """Mean-pooled encoder states ``[B, D]`` of a batch, a few reviews at a time."""
        parts = []
        for start in range(0, len(batch), rows):
            inputs = TextInputs(
                *(
                    t[start : start + rows]
                    for t in (batch.inputs.input_ids, batch.inputs.attention_mask)
                )
            )
            parts.append(
                model.pooled(self.embeddings(model, inputs), inputs.attention_mask)
            )
        return torch.cat(parts)

    def train_model(
        self, seed: int = 0, device: torch.device | str = "cpu"
    ) -> tuple[nn.Module, float]:
        """Logistic regression (L-BFGS, L2) of the head on the pooled states of a seeded subset
        of train reviews; the encoder carries the text/sst2 task's committed BitFit parameters."""
        from .sst2 import STEM as SST2_STEM

        r = self.recipe
        with torch.random.fork_rng(devices=[]), torch_threads(r["threads"]):
            torch.manual_seed(seed)
            model = load_weights(self.build_model(), SST2_STEM).eval().to(device)
            model.head.reset_parameters()
            train = self.samples("train", r["n_train"], r["train_seed"]).to(device)
            features = self.pooled_states(model, train)
            optimiser = torch.optim.LBFGS(
                model.head.parameters(),
                max_iter=r["lbfgs_steps"],
                line_search_fn="strong_wolfe",
            )

            def closure() -> Tensor:
                optimiser.zero_grad()
                loss = nn.functional.cross_entropy(model.head(features), train.labels)
                loss = loss + r["weight_decay"] * model.head.weight.pow(2).sum()
                loss.backward()
                return loss

            optimiser.step(closure)
        test = self.samples("test", len(self.texts("test")[0]), seed=0).to(device)
        return model, self.accuracy(model, test, rows=8)
