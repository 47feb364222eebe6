"""``text/planted``: sentiment of generated sentences whose label is carried by planted words.

Each sentence has 8-20 words. All but 1-3 of them are neutral filler words, drawn with Zipfian
frequencies as in natural text; the others are evidence words of one polarity (class 0:
negative words, class 1: positive words). Only the evidence words determine the label, so their
token positions are the ground truth by construction.

The model is a small BERT trained with random ``[MASK]`` augmentation of every word (filler and
evidence): a sentence whose evidence is all masked is trained towards the uniform distribution.
Removing tokens by ``[MASK]`` therefore stays in the training distribution, and removing the
evidence removes the model's reason for its answer, as faithfulness metrics assume.
"""

from __future__ import annotations

from functools import cached_property
from typing import Any, ClassVar

import torch
from torch import Tensor, nn
from transformers import PreTrainedTokenizerFast

from xaiboard.benchmark.registry import TASKS
from xaiboard.benchmark.task import Batch, TaskCard

from .text import TextInputs, TextTask, word_level_tokenizer
from .weights import load_weights, weights_meta

FILLER = """the a an this that these those it its they them their we our you your he she his her
and or but so then also just still only even about above after again against along among
around at before behind below beside between by during for from in inside into near of off
on onto over past since through to toward under until up upon with within without
film movie story plot scene scenes actor actors actress director script camera screen
picture sound music score dialogue character characters cast crew studio audience viewer
critic review theatre cinema ticket seat popcorn hour minute minutes night evening weekend
day week year time end start middle part chapter episode series sequel version
city house room street car train road river window door table chair book letter phone
is was are were be been has had have does did do will would can could may might should
shows show tells told makes made takes took goes went comes came sees saw watched watch
runs ran starts began ends ended opens opened follows followed features featured
one two three four five first second third last next other another each every some many
most more less few several both all any same such own
here there where when while because although though if as than like
mostly often sometimes usually rarely almost nearly quite rather fairly
man woman child family friend friends father mother brother sister teacher doctor
police soldier king queen town village country world war school office hospital""".split()
NEGATIVE = """awful terrible horrible dreadful boring dull bad poor weak worst ugly annoying
disappointing tedious mediocre painful clumsy bland messy pointless""".split()
POSITIVE = """great excellent wonderful brilliant superb delightful fantastic good lovely charming
enjoyable beautiful amazing moving clever fresh gripping elegant stunning perfect""".split()
SPLITS = ("train", "test")
MIN_WORDS, MAX_WORDS, MAX_EVIDENCE = 8, 20, 3
STEM = "text_planted"
#: version 2: evidence word j of either class is drawn as often as the filler word of Zipf rank
#: ``MIRROR_RANKS[j]``. Every 12th rank from rank 3 holds 1/12 of the filler's Zipf mass, and
#: 1/12 = E[evidence words] / (2 E[filler words]) = 2 / (2 * 12): so each evidence word's share of
#: all tokens equals its mirrored filler word's, and rarity cannot tell evidence from filler.
MIRROR_RANKS = tuple(range(3, 3 + 12 * len(NEGATIVE), 12))


def _zipf() -> Tensor:
    """Zipfian weights of the filler words, most frequent first."""
    return 1.0 / torch.arange(1, len(FILLER) + 1, dtype=torch.float)


def _card(dataset: str, stem: str) -> TaskCard:
    return TaskCard(
        dataset=dataset,
        model="BERT (2 layers, hidden 64, 4 heads), trained with [MASK] augmentation",
        feature_space=f"word tokens, padded to {MAX_WORDS + 2} positions",
        removal="mask-token: removed words become [MASK]",
        ground_truth="positions of the planted evidence words",
        licence="MIT (generated)",
        test_accuracy=weights_meta(stem).get("test_accuracy"),
        removal_baseline="the [MASK] token at every removed position",
        splits="generated: train and test from disjoint generator seeds; evaluated: test",
    )


@TASKS.register("text/planted@1")
class PlantedText(TextTask):
    """Binary sentiment decided only by 1-3 planted evidence words; ground truth = their tokens.

    Version 1, archived: kept loadable so that its records stay reproducible. Its evidence words
    are uniform over 20 words per class, rarer than most Zipfian fillers, so token rarity finds
    them without the model (ground-truth AUROC 0.68).
    """

    name = "text/planted@1"
    version = "1"
    tier = "archived"  # type: ignore[assignment]
    num_classes = 2
    class_names = ("negative", "positive")
    has_ground_truth = True
    weights_stem = STEM
    max_length = MAX_WORDS + 2  # [CLS] words [SEP]
    recipe: ClassVar[dict[str, Any]] = {
        "n_train": 16384,
        "corpus_seed": 0,
        "steps": 600,
        "batch_size": 64,
        "lr": 2e-3,
        "weight_decay": 0.01,
        "n_test": 2000,
        "test_seed": 0,
    }
    card = _card(
        f"generated sentences: {MIN_WORDS}-{MAX_WORDS} Zipfian filler words "
        f"({len(FILLER)}-word vocabulary) + 1-{MAX_EVIDENCE} evidence words of one polarity "
        f"({len(NEGATIVE)} negative / {len(POSITIVE)} positive)",
        STEM,
    )

    @cached_property
    def tokenizer(self) -> PreTrainedTokenizerFast:
        return word_level_tokenizer([*FILLER, *NEGATIVE, *POSITIVE])

    # ---- data -------------------------------------------------------------------------
    def samples(self, split: str, n: int, seed: int) -> Batch:
        """``n`` sentences of ``split``; train and test draw from disjoint generator seeds."""
        if split not in SPLITS:
            raise ValueError(f"text/planted: unknown split {split!r}; expected one of {SPLITS}")
        g = torch.Generator().manual_seed(len(SPLITS) * seed + SPLITS.index(split))
        labels = torch.randint(0, 2, (n,), generator=g)
        words, evidence = self._sentences(labels, g)
        vocab = [*FILLER, *NEGATIVE, *POSITIVE]
        texts = [" ".join(vocab[i] for i in row if i >= 0) for row in words.tolist()]
        inputs = self.encode(texts)
        ground_truth = torch.zeros(n, self.max_length, dtype=torch.bool)
        ground_truth[:, 1 : MAX_WORDS + 1] = evidence  # word j is token j + 1, after [CLS]
        return Batch(inputs, labels, labels, self.valid_features(inputs), ground_truth, torch.arange(n))

    @classmethod
    def _sentences(cls, labels: Tensor, g: torch.Generator) -> tuple[Tensor, Tensor]:
        """Word indices into ``FILLER + NEGATIVE + POSITIVE`` ``[n, MAX_WORDS]`` (-1 past the end)
        and the evidence mask, for sentences of the given labels."""
        n = labels.shape[0]
        lengths = torch.randint(MIN_WORDS, MAX_WORDS + 1, (n, 1), generator=g)
        n_evidence = torch.randint(1, MAX_EVIDENCE + 1, (n, 1), generator=g)
        filler = torch.multinomial(_zipf(), n * MAX_WORDS, replacement=True, generator=g).view(n, MAX_WORDS)
        slot = torch.arange(MAX_WORDS).expand(n, MAX_WORDS)
        inside = slot < lengths
        # evidence slots: the n_evidence lowest random scores among the sentence's own slots
        scores = torch.rand(n, MAX_WORDS, generator=g).masked_fill(~inside, 2.0)
        evidence = (scores.argsort(dim=1).argsort(dim=1) < n_evidence) & inside
        polar = cls._evidence_words(n, g)
        polar = len(FILLER) + polar + labels.view(n, 1) * len(NEGATIVE)
        words = torch.where(evidence, polar, filler).masked_fill(~inside, -1)
        return words, evidence

    @staticmethod
    def _evidence_words(n: int, g: torch.Generator) -> Tensor:
        """Indices ``[n, MAX_WORDS]`` into one class's evidence words: uniform."""
        return torch.randint(0, len(NEGATIVE), (n, MAX_WORDS), generator=g)

    def token_counts(self) -> Tensor:
        corpus = self.samples("train", self.recipe["n_train"], self.recipe["corpus_seed"])
        ids = corpus.inputs.input_ids[corpus.valid]
        return torch.bincount(ids, minlength=len(self.tokenizer))

    # ---- model ------------------------------------------------------------------------
    def model(self, device: torch.device | str = "cpu") -> nn.Module:
        return load_weights(self.build_model(), self.weights_stem).eval().to(device)

    def train_model(self, seed: int = 0, device: torch.device | str = "cpu") -> tuple[nn.Module, float]:
        """AdamW on the fixed training corpus, masking each word with a per-sentence rate drawn
        uniformly from [0, 1]; sentences left without evidence get uniform soft targets."""
        r = self.recipe
        corpus = self.samples("train", r["n_train"], r["corpus_seed"]).to(device)
        g = torch.Generator(device=device).manual_seed(seed)
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            model = self.build_model().to(device).train()
            optimiser = torch.optim.AdamW(model.parameters(), lr=r["lr"], weight_decay=r["weight_decay"])
            schedule = torch.optim.lr_scheduler.OneCycleLR(optimiser, max_lr=r["lr"], total_steps=r["steps"])
            for _ in range(r["steps"]):
                idx = torch.randint(0, r["n_train"], (r["batch_size"],), generator=g, device=device)
                inputs, soft = self._masked(corpus, idx, g)
                loss = nn.functional.cross_entropy(self.predict(model, inputs), soft)
                optimiser.zero_grad()
                loss.backward()
                optimiser.step()
                schedule.step()
        model.eval()
        return model, self.accuracy(model, self.samples("test", r["n_test"], r["test_seed"]).to(device))

    def _masked(self, corpus: Batch, idx: Tensor, g: torch.Generator) -> tuple[TextInputs, Tensor]:
        """Rows ``idx`` of the corpus with random words masked, and their soft targets."""
        ids = corpus.inputs.input_ids[idx]
        rate = torch.rand(len(idx), 1, generator=g, device=ids.device)
        drop = (torch.rand(ids.shape, generator=g, device=ids.device) < rate) & corpus.valid[idx]
        ids = ids.masked_fill(drop, self.tokenizer.mask_token_id)
        soft = nn.functional.one_hot(corpus.labels[idx], self.num_classes).float()
        no_evidence = ~(corpus.ground_truth[idx] & ~drop).any(dim=1)
        soft[no_evidence] = 1.0 / self.num_classes
        return TextInputs(ids, corpus.inputs.attention_mask[idx]), soft

    @torch.no_grad()
    def accuracy(self, model: nn.Module, batch: Batch) -> float:
        return (self.logits(model, batch.inputs).argmax(dim=1) == batch.labels).float().mean().item()



@TASKS.register("text/planted")
class PlantedTextV2(PlantedText):
    """Version 2: evidence words as frequent as filler words, so rarity cannot find them.

    As version 1 (evidence at uniformly random word positions, so position cannot find it
    either), but evidence word ``j`` of each class is drawn with the Zipf weight of filler rank
    ``MIRROR_RANKS[j]`` instead of uniformly: in the corpus every evidence word is as frequent as
    one filler word, spread over the whole frequency range, so the rarity prior ranks evidence
    and filler tokens alike (tests/test_task_text.py measures it).
    """

    name = "text/planted"
    version = "2"
    tier = "built-in"
    weights_stem = "text_planted_v2"
    card = _card(
        f"generated sentences: {MIN_WORDS}-{MAX_WORDS} Zipfian filler words "
        f"({len(FILLER)}-word vocabulary) + 1-{MAX_EVIDENCE} evidence words of one polarity "
        f"({len(NEGATIVE)} negative / {len(POSITIVE)} positive), each as frequent as a filler word",
        "text_planted_v2",
    )

    @staticmethod
    def _evidence_words(n: int, g: torch.Generator) -> Tensor:
        """Indices ``[n, MAX_WORDS]`` into one class's evidence words, word ``j`` with the Zipf
        weight of filler rank ``MIRROR_RANKS[j]``."""
        weights = _zipf()[list(MIRROR_RANKS)]
        return torch.multinomial(weights, n * MAX_WORDS, replacement=True, generator=g).view(n, MAX_WORDS)
