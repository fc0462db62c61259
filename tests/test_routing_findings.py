"""Findings from the routing numbers: the strongest part, its share and place, in words."""

import dataclasses

import numpy as np
import pytest

from capsviewer.analysis.inspection import inspect_capsnet
from capsviewer.analysis.routing_findings import (
    describe_strongest, dominance_survey, grid_place, strongest_part,
)
from capsviewer.training import load_checkpoint


@pytest.fixture(scope="module")
def capsnet(model_files):
    return load_checkpoint(model_files["capsnet"]).model


@pytest.fixture(scope="module")
def capsules(capsnet, mnist_test):
    return inspect_capsnet(capsnet, mnist_test.images[0, 0])


def test_the_strongest_part_is_measured_from_the_support(capsules):
    j = capsules.prediction
    part = strongest_part(capsules, j)
    support = capsules.contributions(j)  # c_ij‖û_{j|i}‖
    index = np.unravel_index(np.argmax(support), support.shape)
    assert (part.grid_map, part.row, part.col) == index
    assert part.share == pytest.approx(support.max() / support.sum())
    assert part.coupling == pytest.approx(capsules.iterations[-1].couplings[(*index, j)])
    assert part.uniform == pytest.approx(0.1)  # J = 10 digit capsules
    lengths = capsules.vote_lengths[..., j]
    assert part.vote_ratio == pytest.approx(lengths[index] / np.median(lengths))
    top, left, bottom, right = capsules.receptive_fields[index[1], index[2]]
    assert part.field == (top, left, bottom, right)
    assert part.ink == pytest.approx(capsules.image[top:bottom, left:right].mean())
    votes = capsules.votes[..., j, :].reshape(-1, 16)
    s = (capsules.iterations[-1].couplings[..., j].reshape(-1, 1) * votes).sum(axis=0)
    vote = part.coupling * capsules.votes[(*index, j)]
    assert part.alignment == pytest.approx(s @ vote / np.linalg.norm(s) / np.linalg.norm(vote),
                                           abs=1e-5)


def test_the_sentence_follows_the_numbers(capsules):
    part = strongest_part(capsules, capsules.prediction)
    spread = dataclasses.replace(part, share=0.04, top_ten_share=0.2)
    text = describe_strongest(spread)
    assert text.startswith("No single part dominates") and "4%" in text and "20%" in text
    dominant = dataclasses.replace(part, share=0.3, vote_ratio=40.0, alignment=0.97, ink=0.3)
    text = describe_strongest(dominant)
    assert "One part carries 30%" in text and "40× as long" in text and "cos 0.97" in text
    assert "bias" not in text  # it sees ink
    blank = dataclasses.replace(dominant, ink=0.0, alignment=0.5)
    text = describe_strongest(blank)
    assert "like a bias" in text and "cos" not in text  # not aligned: not said
    raised = dataclasses.replace(dominant, coupling=0.85, uniform=0.1)
    text = describe_strongest(raised, weight="r")
    assert ("40× as long as the median vote, routing raised its r from the uniform 0.10 to 0.85, "
            "and it points where" in text)
    text = describe_strongest(dataclasses.replace(raised, coupling=0.14))  # < 1.5 × uniform
    assert "raised" not in text and "median vote and it points where" in text
    # Uniform couplings (no routing, or iteration 1): nothing raised, whatever else holds.
    text = describe_strongest(dataclasses.replace(raised, coupling=0.1, alignment=0.2))
    assert text.endswith("Its vote is 40× as long as the median vote.")


def test_grid_place():
    assert grid_place(5, 2, 6, 6) == "the bottom row"
    assert grid_place(0, 0, 6, 6) == "the top-left corner"
    assert grid_place(3, 5, 6, 6) == "the right column"
    assert grid_place(2, 3, 6, 6) == "the middle"


def test_a_survey_finds_a_planted_part(capsnet, mnist_test):
    import copy

    import torch

    planted = copy.deepcopy(capsnet)
    i = (20 * 6 + 3) * 6 + 1
    with torch.no_grad():
        planted.digit_weights[i] *= 300
    survey = dominance_survey(planted, mnist_test.images[:40], mnist_test.labels[:40],
                              batch_size=20)
    assert survey.images == 40 and survey.most_common == (20, 3, 1)
    assert survey.most_common_images >= 36 and survey.median_share > 0.1
    assert survey.mean_vote_length > 20 * survey.median_vote_length
    assert 0 <= survey.saturated <= 1 and survey.field == planted.receptive_field(3, 1)
