"""Example explanations drawn over their inputs: heatmaps over images, highlighted tokens, graphs
with scored edges.

One colour rule for every modality: a feature's colour says the sign of its score (red positive,
blue negative) and its strength says ``|score|`` relative to the sample's largest ``|score|``,
so pictures of different methods compare by *where* a method looks, not by its scale. Ground
truth, where the task has one, is outlined in green: a contour around image regions, a line
under tokens, a halo around edges. The explained node of a node-level graph task is orange.

Tokens are untrusted text (a results folder is written by submitters): each one is
HTML-escaped, and the only markup is the board's own spans whose styles are numbers it
computed. Everything here is a pure function of an examples file (``benchmark/examples.py``),
unit-tested on constructed arrays; the pages cache the results by the file's content.
"""

from __future__ import annotations

import html
import io
from dataclasses import dataclass

import matplotlib.image
import networkx as nx
import numpy as np
from matplotlib.figure import Figure
from scipy.ndimage import binary_erosion

from xaiboard.benchmark.examples import Examples

POSITIVE = np.array([0.84, 0.15, 0.16])
NEGATIVE = np.array([0.13, 0.40, 0.85])
TRUTH = np.array([0.0, 0.75, 0.2])
CENTER = "#ff8c00"
#: pictures of images are scaled up (nearest neighbour) to about this many pixels per side
IMAGE_PIXELS = 192
GRAPH_INCHES, GRAPH_DPI = 3.0, 80
#: layouts are deterministic, so a sample's graph is laid out the same for every method
LAYOUT_SEED = 0


@dataclass(frozen=True)
class Picture:
    """One sample's drawing: ``png`` bytes or ``html`` text, and a caption made of numbers only."""

    kind: str
    data: bytes | str
    caption: str


def pictures(examples: Examples) -> list[Picture]:
    """Every sample of ``examples`` drawn over its input."""
    a = examples.arrays
    truth = a.get("ground_truth")
    drawn = []
    for i, (sample, target) in enumerate(zip(a["sample_ids"].tolist(), a["targets"].tolist())):
        caption = f"sample {sample}, class {target}"
        gt = None if truth is None else truth[i]
        if examples.modality == "image":
            drawn.append(Picture("png", png(image_overlay(a["images"][i], a["scores"][i], gt)), caption))
        elif examples.modality == "text":
            drawn.append(Picture("html", token_html(a["tokens"][i], a["scores"][i], a["valid"][i], gt), caption))
        else:
            drawn.append(Picture("png", graph_png(*graph_sample(a, i)), caption))
    return drawn


def strengths(scores: np.ndarray, valid: np.ndarray | None = None) -> np.ndarray:
    """``scores / max |score|`` over the valid features, in ``[-1, 1]``; zeros where all are 0."""
    valid = np.ones(scores.shape, dtype=bool) if valid is None else valid
    scores = np.where(valid, np.nan_to_num(scores.astype(np.float64)), 0.0)
    peak = np.abs(scores).max(initial=0.0)
    return scores / peak if peak > 0 else np.zeros_like(scores)


def image_overlay(image: np.ndarray, scores: np.ndarray, truth: np.ndarray | None = None) -> np.ndarray:
    """The heatmap over the grey image, ``[H*s, W*s, 3]`` uint8: each pixel blends towards red
    (positive) or blue (negative) by its strength; ground truth outlined in green."""
    scale = max(1, IMAGE_PIXELS // max(image.shape[:2]))
    grey = np.repeat(image.mean(axis=2, keepdims=True), 3, axis=2)
    s = strengths(scores)[..., None]
    colour = np.where(s >= 0, POSITIVE, NEGATIVE)
    blended = (1 - np.abs(s)) * grey + np.abs(s) * colour
    big = np.kron(blended, np.ones((scale, scale, 1)))
    if truth is not None and truth.any():
        region = np.kron(truth, np.ones((scale, scale), dtype=bool)).astype(bool)
        edge = region & ~binary_erosion(region, iterations=max(1, scale // 8), border_value=0)
        big[edge] = TRUTH
    return np.round(255 * big.clip(0, 1)).astype(np.uint8)


def png(rgb: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    matplotlib.image.imsave(buffer, rgb, format="png")
    return buffer.getvalue()


def token_html(tokens: np.ndarray, scores: np.ndarray, valid: np.ndarray, truth: np.ndarray | None = None) -> str:
    """The valid tokens as HTML spans, each with a red (positive) or blue (negative) background
    as strong as its score, ground-truth tokens underlined in green; WordPiece continuations
    (``##ing``) join the token before them. Tokens are HTML-escaped."""
    s = strengths(scores, valid)
    spans = []
    for i in np.flatnonzero(valid):
        token = str(tokens[i])
        joined = token.startswith("##") and spans
        rgb = ",".join(str(round(255 * c)) for c in (POSITIVE if s[i] >= 0 else NEGATIVE))
        style = f"background-color:rgba({rgb},{abs(s[i]):.2f});padding:1px 2px;border-radius:3px"
        if truth is not None and truth[i]:
            style += ";border-bottom:3px solid rgb(0,191,51)"
        text = html.escape(token[2:] if joined else token, quote=True)
        spans.append(("" if joined else " ") + f'<span style="{style}" title="{scores[i]:.3g}">{text}</span>')
    return f'<div style="line-height:2.1;font-family:monospace">{"".join(spans).strip()}</div>'


def graph_sample(a: dict[str, np.ndarray], i: int) -> tuple[np.ndarray, np.ndarray, int, int, np.ndarray | None]:
    """Sample ``i``'s edges ``[2, E]``, their scores, its node count, explained node, ground truth."""
    mine = a["edge_sample"] == i
    slots = a["edge_slot"][mine]
    truth = a["ground_truth"][i, slots] if "ground_truth" in a else None
    return a["edge_index"][:, mine], a["scores"][i, slots], int(a["node_counts"][i]), int(a["center"][i]), truth


def undirected(edges: np.ndarray, scores: np.ndarray, truth: np.ndarray | None) -> dict[tuple[int, int], tuple[float, bool]]:
    """Each undirected edge once: the score of larger magnitude of its two directions, and
    whether either direction is ground truth (message passing scores ``u -> v`` and ``v -> u`` apart)."""
    merged: dict[tuple[int, int], tuple[float, bool]] = {}
    for e, (u, v) in enumerate(edges.T.tolist()):
        key = (min(u, v), max(u, v))
        score, gt = float(scores[e]), bool(truth[e]) if truth is not None else False
        old_score, old_gt = merged.get(key, (0.0, False))
        merged[key] = (score if abs(score) > abs(old_score) else old_score, gt or old_gt)
    return merged


def graph_png(edges: np.ndarray, scores: np.ndarray, nodes: int, center: int, truth: np.ndarray | None) -> bytes:
    """The sample's graph (spring layout, fixed seed): every edge thin and grey, over it as wide
    and as red (positive) or blue (negative) as its strength; ground-truth edges under a green
    halo, the explained node orange."""
    merged = undirected(edges, scores, truth)
    graph = nx.Graph()
    graph.add_nodes_from(range(nodes))
    graph.add_edges_from(merged)
    layout = nx.spring_layout(graph, seed=LAYOUT_SEED)
    keys = list(merged)
    s = strengths(np.array([merged[k][0] for k in keys]))
    colours = [(*(POSITIVE if x >= 0 else NEGATIVE), abs(x)) for x in s]
    fig = Figure(figsize=(GRAPH_INCHES, GRAPH_INCHES), dpi=GRAPH_DPI)  # not pyplot: no global figure state
    ax = fig.subplots()
    ax.set_axis_off()
    truth_edges = [k for k in keys if merged[k][1]]
    if truth_edges:
        nx.draw_networkx_edges(graph, layout, edgelist=truth_edges, width=10, edge_color=[(*TRUTH, 0.5)], ax=ax)
    nx.draw_networkx_edges(graph, layout, edgelist=keys, width=0.8, edge_color="#bbbbbb", ax=ax)  # the structure
    nx.draw_networkx_edges(graph, layout, edgelist=keys, width=0.5 + 3.5 * np.abs(s), edge_color=colours, ax=ax)
    others = [n for n in range(nodes) if n != center]
    nx.draw_networkx_nodes(graph, layout, nodelist=others, node_size=12, node_color="#555555", ax=ax)
    if center >= 0:
        nx.draw_networkx_nodes(graph, layout, nodelist=[center], node_size=90, node_color=CENTER, edgecolors="black", ax=ax)
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", bbox_inches="tight")
    return buffer.getvalue()
