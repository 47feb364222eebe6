"""Drawing example explanations (``leaderboard/pictures.py``) on constructed arrays: colours by
sign and strength, ground truth outlined, tokens escaped, edges merged per undirected pair."""

from __future__ import annotations

import io

import matplotlib.image
import numpy as np
import pytest

from xaiboard.benchmark.examples import Examples
from xaiboard.leaderboard.pictures import (
    IMAGE_PIXELS, NEGATIVE, POSITIVE, TRUTH, graph_png, image_overlay, pictures, strengths, token_html, undirected,
)  # fmt: skip

#: uint8 colours are rounded to 1/255; compare in that unit
ROUNDING = 0.5 / 255 + 1e-9


def test_strengths_are_relative_to_the_largest_valid_magnitude():
    scores = np.array([2.0, -4.0, 1.0, 100.0])
    valid = np.array([True, True, True, False])
    np.testing.assert_allclose(strengths(scores, valid), [0.5, -1.0, 0.25, 0.0])
    assert not strengths(np.zeros(3)).any()  # an all-zero explanation draws nothing, no division by 0


def test_image_overlay_blends_by_sign_and_strength_and_outlines_the_truth():
    image = np.full((4, 4, 3), 0.5)
    scores = np.zeros((4, 4))
    scores[0, 0], scores[0, 1], scores[3, 3] = 1.0, -1.0, 0.5
    truth = np.zeros((4, 4), dtype=bool)
    truth[2:, :2] = True
    rgb = image_overlay(image, scores, truth) / 255
    scale = IMAGE_PIXELS // 4
    assert rgb.shape == (4 * scale, 4 * scale, 3)
    centre = lambda r, c: rgb[r * scale + scale // 2, c * scale + scale // 2]  # noqa: E731
    np.testing.assert_allclose(centre(0, 0), POSITIVE, atol=ROUNDING)  # the strongest positive: pure red
    np.testing.assert_allclose(centre(0, 1), NEGATIVE, atol=ROUNDING)  # the strongest negative: pure blue
    np.testing.assert_allclose(centre(1, 1), [0.5] * 3, atol=ROUNDING)  # no score: the grey image
    np.testing.assert_allclose(centre(3, 3), 0.5 * 0.5 + 0.5 * POSITIVE, atol=ROUNDING)  # half strength: half way
    np.testing.assert_allclose(rgb[2 * scale, 0], TRUTH, atol=ROUNDING)  # the region's border is green...
    np.testing.assert_allclose(centre(2, 0), [0.5] * 3, atol=ROUNDING)  # ...its inside is not


def test_tokens_are_escaped_coloured_and_underlined():
    tokens = np.array(["[CLS]", "<script>alert(1)</script>", "good", "##ness", "bad", "[PAD]"])
    scores = np.array([9.0, 0.5, 1.0, 0.25, -1.0, 9.0])
    valid = np.array([False, True, True, True, True, False])
    truth = np.array([False, False, True, False, False, False])
    page = token_html(tokens, scores, valid, truth)
    assert "<script" not in page and "&lt;script&gt;alert(1)&lt;/script&gt;" in page
    assert "[CLS]" not in page and "[PAD]" not in page  # only valid tokens
    spans = page.split("<span ")[1:]
    assert len(spans) == 4 and ">ness</span>" in spans[2] and page.count("</span><span") == 1  # "##ness" joins "good"
    red, blue = (",".join(str(round(255 * c)) for c in colour) for colour in (POSITIVE, NEGATIVE))
    assert f"rgba({red},1.00)" in spans[1] and "border-bottom" in spans[1]  # "good": strongest, ground truth
    assert f"rgba({red},0.50)" in spans[0] and "border-bottom" not in spans[0]
    assert f"rgba({blue},1.00)" in spans[3]


def test_a_token_cannot_break_out_of_its_attribute():
    page = token_html(np.array(['" onmouseover="alert(1)']), np.array([1.0]), np.array([True]))
    assert 'onmouseover="' not in page and "&quot; onmouseover=&quot;alert(1)" in page


def test_both_directions_of_an_edge_become_one_with_the_stronger_score():
    edges = np.array([[0, 1, 1, 2], [1, 0, 2, 1]])
    scores = np.array([0.2, -0.9, 0.3, 0.1])
    truth = np.array([False, False, False, True])
    assert undirected(edges, scores, truth) == {(0, 1): (-0.9, False), (1, 2): (0.3, True)}
    assert undirected(edges, scores, None) == {(0, 1): (-0.9, False), (1, 2): (0.3, False)}


def test_graph_pictures_are_deterministic_pngs():
    edges = np.array([[0, 1, 1, 2, 2, 3], [1, 0, 2, 1, 3, 2]])
    scores = np.array([1.0, 0.5, -0.2, 0.0, 0.1, 0.1])
    first = graph_png(edges, scores, 5, 1, np.array([True, True, False, False, False, False]))
    assert first.startswith(b"\x89PNG") and first == graph_png(edges, scores, 5, 1, np.array([True, True] + [False] * 4))
    assert matplotlib.image.imread(io.BytesIO(first)).ndim == 3


@pytest.mark.parametrize("modality", ["image", "text", "graph"])
def test_every_sample_of_a_file_gets_a_picture_with_a_numbers_only_caption(modality):
    arrays = {
        "image": {"images": np.zeros((2, 3, 3, 1)), "valid": np.ones((2, 3, 3), dtype=bool), "scores": np.ones((2, 3, 3))},
        "text": {"tokens": np.array([["a", "b"], ["c", "d"]]), "valid": np.ones((2, 2), dtype=bool),
                 "scores": np.ones((2, 2))},
        "graph": {"edge_index": np.array([[0, 0], [1, 1]]), "edge_sample": np.array([0, 1]),
                  "edge_slot": np.array([0, 0]), "node_counts": np.array([2, 2]), "center": np.array([0, -1]),
                  "valid": np.ones((2, 1), dtype=bool), "scores": np.ones((2, 1))},
    }[modality]  # fmt: skip
    examples = Examples("x.npz", {"modality": modality}, {"sample_ids": np.array([5, 9]), "targets": np.array([1, 0]), **arrays})
    drawn = pictures(examples)
    assert [p.caption for p in drawn] == ["sample 5, class 1", "sample 9, class 0"]
    assert {p.kind for p in drawn} == {"html" if modality == "text" else "png"}
