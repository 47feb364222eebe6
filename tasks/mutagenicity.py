"""``graph/mutagenicity``: is this molecule a mutagen? (TU Mutagenicity; Kazius et al., J. Med. Chem. 2005)

4,337 molecules as graphs: atoms are nodes (one-hot element, 14 types), bonds are edges; class 0
is "mutagen", class 1 "nonmutagen". Loaded with PyG's ``TUDataset`` under
``tasks.hub.data_dir()`` (it downloads the TU archive once; raw files already under
``<data>/Mutagenicity/raw/`` load offline). The TU server publishes no versions, so the card
pins the content instead: a checksum of the graphs, stored with the weights and checked on load.

Ground truth is chemistry, derived from atom labels: nitro (NO2) and amino (NH2) groups are
known mutagenic toxicophores (Kazius et al.). A group is a nitrogen with exactly three
neighbours, two O (nitro) or two H (amino) and one attachment atom that is neither; its two N-O
or N-H bonds are the ground truth. (Dropping the attachment condition marks 32 more edges: bare
N-O2 fragments and O-NH2.) This rule reproduces the edge labels PGExplainer published for this
dataset exactly (tested, matched by node pair). Evaluated samples are the test molecules that
are mutagens and contain such a group, explained for the mutagen class.

The model is an edge-weighted GIN (:mod:`.gin`: GIN's sum has no edge weights, and the
``zero-weight`` removal needs them) trained by this project on a fixed stratified 80/20 split.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor, nn
from torch_geometric.data import Batch as PygBatch
from torch_geometric.datasets import TUDataset

from xaiboard.benchmark.registry import TASKS
from xaiboard.benchmark.task import TaskCard

from .gin import WeightedGIN
from .graph import GraphClassificationTask
from .hub import data_dir
from .weights import weights_meta

#: TU Mutagenicity's atom label map (``Mutagenicity_label_readme.txt``): index of the one-hot column
ATOMS = ("C", "O", "Cl", "H", "N", "F", "Br", "S", "P", "I", "Na", "K", "Li", "Ca")
MUTAGEN = 0


def toxicophore_edges(atom: Tensor, edge_index: Tensor) -> Tensor:
    """Bool per edge: a bond between the N and an O of a nitro group, or the N and an H of an amino group.

    ``atom`` holds element indices (``ATOMS``); edges are directed and come in both directions.
    """
    src, dst = edge_index
    n_atoms = atom.numel()

    def neighbours(element: str) -> Tensor:
        return torch.bincount(dst[atom[src] == ATOMS.index(element)], minlength=n_atoms)

    oxygens, hydrogens = neighbours("O"), neighbours("H")
    three = (torch.bincount(dst, minlength=n_atoms) == 3) & (atom == ATOMS.index("N"))
    nitro = three & (oxygens == 2) & (hydrogens == 0)
    amino = three & (hydrogens == 2) & (oxygens == 0)

    def bond(n: Tensor, other: Tensor) -> Tensor:
        return (nitro[n] & (atom[other] == ATOMS.index("O"))) | (amino[n] & (atom[other] == ATOMS.index("H")))

    return bond(src, dst) | bond(dst, src)


@TASKS.register("graph/mutagenicity")
class MutagenicityTask(GraphClassificationTask):
    name = "graph/mutagenicity"
    version = "1"
    tier = "hub"
    num_classes = 2
    class_names = ("mutagen", "nonmutagen")
    has_ground_truth = True
    gt_classes = (MUTAGEN,)
    weights_stem = "graph_mutagenicity"
    recipe: dict[str, Any] = {
        "model": "weighted GIN, summed jumping-knowledge readout",
        "hidden_channels": 32,
        "num_layers": 3,
        "optimizer": "adam",
        "lr": 0.005,
        "weight_decay": 0.0,
        "batch_size": 64,
        "epochs": 60,
        "threads": 1,
    }
    num_hops = 3

    @property
    def card(self) -> TaskCard:
        meta = weights_meta(self.weights_stem)
        return TaskCard(
            dataset="TU Mutagenicity (Kazius et al. 2005; Riesen & Bunke 2008): 4,337 molecules, PyG TUDataset",
            dataset_revision=f"unversioned TU archive; content checksum {meta.get('checksum')} (edge_index), checked on load",
            model=f"3-layer edge-weighted GIN ({self.recipe['hidden_channels']} channels), summed readout",
            feature_space="every bond of the molecule (both directions)",
            removal=self.removal_name,
            removal_baseline="the molecule with every bond removed: isolated atoms (edge weight 0 or bonds deleted)",
            ground_truth="N-O bonds of nitro and N-H bonds of amino groups, derived from atom labels "
            "(equal to PGExplainer's published edge labels)",
            licence="TU graph collection, public benchmark without a stated licence (Kazius et al. 2005)",
            test_accuracy=meta.get("test_accuracy"),
            splits="molecules split 80/20 stratified by class (seed 0); the GIN trained on the 3,469 train molecules; "
            "evaluated: test mutagens that contain a nitro or amino group",
        )

    def load_dataset(self) -> PygBatch:
        """Every molecule, with its toxicophore bonds as ``edge_mask``."""
        molecules = PygBatch.from_data_list(list(TUDataset(root=str(data_dir()), name="Mutagenicity")))
        molecules.edge_mask = toxicophore_edges(molecules.x.argmax(1), molecules.edge_index)
        return molecules

    def build_model(self) -> nn.Module:
        r = self.recipe
        return WeightedGIN(len(ATOMS), r["hidden_channels"], r["num_layers"], self.num_classes)
