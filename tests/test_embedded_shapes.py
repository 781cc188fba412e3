"""The Shapes renderer and the probe that judges videos (the ground truth of the built-in model)."""

import random

import numpy as np
import pytest

from training import probe, shapes

# the built-in model's renderer and probe, tens of seconds alone: `model` (make check leaves it out).
pytestmark = pytest.mark.model


def test_render_is_deterministic_given_a_seed():
    first = shapes.render_clip(shapes.sample_spec(random.Random(42)))
    second = shapes.render_clip(shapes.sample_spec(random.Random(42)))
    other = shapes.render_clip(shapes.sample_spec(random.Random(43)))
    assert first.shape == (shapes.NUM_FRAMES, shapes.FRAME_SIZE, shapes.FRAME_SIZE, 3)
    assert first.dtype == np.uint8
    assert np.array_equal(first, second)
    assert not np.array_equal(first, other)


@pytest.mark.parametrize("seed", range(40))
def test_clip_follows_the_domain_rules(seed):
    spec = shapes.sample_spec(random.Random(seed), held_out=None)
    assert spec.color != spec.background
    size = shapes.FRAME_SIZE
    for side, (x, y) in ((spec.start_size, spec.start_center), (spec.end_size, spec.end_center)):
        assert side / 2 <= x <= size - side / 2 and side / 2 <= y <= size - side / 2, "object leaves the frame"
    travel = np.hypot(spec.end_center[0] - spec.start_center[0], spec.end_center[1] - spec.start_center[1])
    area_ratio = (spec.end_size / spec.start_size) ** 2
    if spec.motion in ("left", "right", "up", "down"):
        assert travel >= size / 3
    elif spec.motion == "growing":
        assert area_ratio >= 2 and travel == 0
    elif spec.motion == "shrinking":
        assert area_ratio <= 0.5 and travel == 0
    else:
        assert travel == 0 and area_ratio == 1


def test_background_and_object_pixels_have_the_palette_colours():
    spec = shapes.sample_spec(random.Random(5), shape="square", color="red", background="black", motion="still")
    clip = shapes.render_clip(spec)
    assert tuple(clip[0, 0, 0]) == shapes.BACKGROUND_COLORS["black"]
    cx, cy = (round(c) for c in spec.start_center)
    assert tuple(clip[0, cy, cx]) == shapes.OBJECT_COLORS["red"]


def test_held_out_combinations_are_excluded_unless_asked_for():
    rng = random.Random(0)
    training = [shapes.sample_spec(rng) for _ in range(2000)]
    assert not any(s.is_held_out() for s in training)
    held = [shapes.sample_spec(rng, held_out=True) for _ in range(50)]
    assert all(s.is_held_out() for s in held)
    assert any(s.color == "purple" and s.shape == "triangle" for s in held)
    assert any(s.motion == "growing" and s.background == "gray" for s in held)


def test_captions_name_every_attribute_in_varied_forms():
    rng = random.Random(3)
    spec = shapes.sample_spec(rng, shape="triangle", color="blue", background="white", motion="left")
    captions = {shapes.caption(spec, rng) for _ in range(60)}
    assert len(captions) > 10
    for text in captions:
        assert "blue" in text and "triangle" in text and "white" in text and "left" in text
    vocabulary = set(shapes.vocabulary())
    for text in captions:
        assert set(text.replace(",", " , ").split()) <= vocabulary


def test_probe_reads_rendered_ground_truth_perfectly():
    rng = random.Random(11)
    results = [(spec, probe.judge(shapes.render_clip(spec))) for spec in (shapes.sample_spec(rng, held_out=None) for _ in range(150))]
    report = probe.score(results)
    assert report == {"color": 1.0, "background": 1.0, "shape": 1.0, "motion": 1.0, "visible": 1.0}


def test_probe_fails_a_video_that_does_not_match():
    spec = shapes.sample_spec(random.Random(2), shape="circle", color="green", background="gray", motion="right")
    reversed_clip = shapes.render_clip(spec)[::-1]
    judgement = probe.judge(reversed_clip)
    assert judgement.motion == "left"
    blank = np.full_like(reversed_clip, 128)
    empty = probe.judge(blank)
    assert empty.visible_share == 0 and empty.shape is None and empty.motion is None


@pytest.mark.parametrize("motion", shapes.MOTIONS)
def test_canonical_layout_stays_in_the_frame_and_the_probe_reads_it(motion):
    rng = random.Random(motion)
    results = []
    for _ in range(20):
        spec = shapes.sample_spec(rng, canonical=True, motion=motion)
        size = shapes.FRAME_SIZE
        for side, (x, y) in ((spec.start_size, spec.start_center), (spec.end_size, spec.end_center)):
            assert side / 2 <= x <= size - side / 2 and side / 2 <= y <= size - side / 2, "object leaves the frame"
            # one layout: the centre of the frame across the motion, a few pixels of jitter
            if motion in ("left", "right"):
                assert abs(y - size / 2) <= shapes.JITTER
            elif motion in ("up", "down"):
                assert abs(x - size / 2) <= shapes.JITTER
            else:
                assert abs(x - size / 2) <= shapes.JITTER and abs(y - size / 2) <= shapes.JITTER
        results.append((spec, probe.judge(shapes.render_clip(spec))))
    assert probe.score(results) == {"color": 1.0, "background": 1.0, "shape": 1.0, "motion": 1.0, "visible": 1.0}


def test_canonical_layout_keeps_the_held_out_combinations_out():
    rng = random.Random(9)
    assert not any(shapes.sample_spec(rng, canonical=True).is_held_out() for _ in range(2000))
