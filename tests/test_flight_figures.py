"""The flight figures (`mothray.analysis.flight_figures`): the moth's outline against
moth-model.md's geometry, and the landscape, paths and animation drawn for real (Agg, PIL)
from synthetic flights."""

import subprocess
import sys
import warnings

import numpy as np
import pytest
from matplotlib.patches import Ellipse
from PIL import Image

from mothray.analysis import flight_figures as ff
from mothray.moth.parameters import MothParameters

TASKS = ("track", "hover", "flower")


def synthetic_flight(steps: int, seed: int = 0, noise: float = 0.05):
    """A flower-like flight: wanted states (steps, 8) 2 cm sideways at 1 Hz, the start (8,),
    states flown near them (steps + 1, 8) and smooth controls (steps, 3)."""
    rng = np.random.default_rng(seed)
    times = 0.02 * np.arange(steps + 1)
    path = np.zeros((steps + 1, 8))
    path[:, 0] = 2 * np.sin(2 * np.pi * times)
    path[:, 4], path[:, 6] = 1.3, 1.3 + np.pi
    states = path + np.cumsum(rng.normal(0, noise, path.shape), axis=0)
    states[0] = path[0]
    controls = np.column_stack(
        [20000 + 5000 * np.sin(times[:-1]), 0.4 + 0.0 * times[:-1], 1e4 + 0.0 * times[:-1]]
    )
    return path[1:], path[0], states, controls


def abandoned(states: np.ndarray, controls: np.ndarray, at: int):
    """The flight abandoned at step `at`: NaN from state `at` and control `at - 1` on."""
    states, controls = states.copy(), controls.copy()
    states[at:] = np.nan
    controls[at - 1 :] = np.nan
    return states, controls


# --- the outline: moth-model.md's geometry


def test_outline_matches_the_spec_geometry_at_a_body_scale():
    rng = np.random.default_rng(7)
    state = rng.uniform(-3, 3, 8)
    force, alpha = 31000.0, 2.1
    s, p = 1.3, MothParameters()
    outline = ff.moth_outline(state, np.array([force, alpha, 5e4]), body_scale=s)
    x, y, theta, phi = state[0], state[2], state[4], state[6]

    head, abdomen = outline["head"], outline["abdomen"]
    np.testing.assert_allclose(
        head["center"], [x + s * p.L1 * np.cos(theta), y + s * p.L1 * np.sin(theta)]
    )
    np.testing.assert_allclose(
        abdomen["center"], [x + s * p.L2 * np.cos(phi), y + s * p.L2 * np.sin(phi)]
    )
    assert head["width"] == pytest.approx(2 * s * p.a_head)
    assert head["height"] == pytest.approx(2 * s * p.b_head)
    assert abdomen["width"] == pytest.approx(2 * s * p.a_abd)
    assert abdomen["height"] == pytest.approx(2 * s * p.b_abd)
    assert head["angle"] == pytest.approx(np.degrees(theta))
    assert abdomen["angle"] == pytest.approx(np.degrees(phi))

    arrow = outline["arrow"]
    np.testing.assert_allclose(
        arrow["base"], [x + s * p.L3 * np.cos(theta), y + s * p.L3 * np.sin(theta)]
    )
    vector = arrow["vector"]
    direction = np.arctan2(vector[1], vector[0])
    assert np.mod(direction - (alpha + theta), 2 * np.pi) == pytest.approx(0, abs=1e-9)
    assert np.hypot(*vector) == pytest.approx(s * force / 10_000)  # 1 cm per 10^4 dyn


def test_arrow_length_is_proportional_to_the_force_and_absent_without_controls():
    state = np.array([1.0, 0, -2.0, 0, 0.7, 0, 3.5, 0])
    lengths = [
        np.hypot(*ff.moth_outline(state, np.array([f, 1.0, 0.0]), 1.1)["arrow"]["vector"])
        for f in (0.0, 10_000.0, 40_000.0)
    ]
    np.testing.assert_allclose(lengths, [0.0, 1.1, 4.4])
    assert ff.moth_outline(state, None)["arrow"] is None


def test_outline_ellipses_run_along_their_body_axes_and_meet_at_the_joint():
    # as matplotlib draws them: the head-thorax's rear tip and, straight behind it
    # (phi = theta + pi), the abdomen's front tip are both at the joint, since L1 = a_head
    # and L2 = a_abd
    theta, s = 0.9, 1.3
    state = np.array([2.0, 0, 1.0, 0, theta, 0, theta + np.pi, 0])
    outline = ff.moth_outline(state, None, body_scale=s)
    for body in ("head", "abdomen"):
        shape = outline[body]
        patch = Ellipse(shape["center"], shape["width"], shape["height"], angle=shape["angle"])
        rear = patch.get_patch_transform().transform([(-1, 0)])[0]
        np.testing.assert_allclose(rear, [2.0, 1.0], atol=1e-12)
    p = MothParameters()
    head = Ellipse(**{k: outline["head"][k] for k in ("width", "height", "angle")}, xy=(0, 0))
    front = head.get_patch_transform().transform([(1, 0)])[0]
    np.testing.assert_allclose(np.hypot(*front), s * p.a_head)  # half the width, along θ
    np.testing.assert_allclose(np.arctan2(front[1], front[0]), theta)


# --- the landscape


def landscape_data():
    """Six levels, the third not computed (NaN); time within the bound of 1,000 ms flights."""
    rng = np.random.default_rng(3)
    sparsity = np.array([0.0, 0.2, 0.36, 0.49, 0.59, 0.67])
    success = rng.uniform(0.5, 1.0, (3, 6, 5))
    lasted = rng.uniform(100.0, 1000.0, (3, 6, 5))
    success[:, 2] = lasted[:, 2] = np.nan
    return sparsity, success, lasted


def test_landscape_axes_lines_legend_and_threshold():
    sparsity, success, lasted = landscape_data()
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # NaN levels: skipped, no warning
        fig = ff.flight_landscape(sparsity, TASKS, success, lasted, 1000.0, 4, "dense 32x3")
        fig.savefig(__import__("io").BytesIO(), format="png")
    rate, time = fig.axes
    assert "%" in rate.get_ylabel()
    assert "(ms)" in time.get_ylabel() and time.get_ylim()[1] >= 1000
    assert "%" in time.get_xlabel() and "sparsity" in time.get_xlabel()
    labels = [text.get_text() for text in fig.legends[0].get_texts()]
    assert labels == [*TASKS, "modal optimal sparsity (59%)"]

    for ax in (rate, time):
        dashed = [line for line in ax.get_lines() if line.get_linestyle() == "--"]
        assert len(dashed) == 1
        np.testing.assert_allclose(dashed[0].get_xdata(), [59.0, 59.0])

    computed = 100 * sparsity[[0, 1, 3, 4, 5]]
    for ax, values, scale in ((rate, success, 100), (time, lasted, 1)):
        medians = {line.get_label(): line for line in ax.get_lines() if line.get_label() in TASKS}
        for t, task in enumerate(TASKS):
            np.testing.assert_allclose(medians[task].get_xdata(), computed)  # level 2 skipped
            expected = scale * np.median(values[t][[0, 1, 3, 4, 5]], axis=1)
            np.testing.assert_allclose(medians[task].get_ydata(), expected)


def test_landscape_without_threshold():
    sparsity, success, lasted = landscape_data()
    fig = ff.flight_landscape(sparsity, TASKS[:2], success[:2], lasted[:2], 1000.0, None, "x")
    rate, _ = fig.axes
    assert not [line for line in rate.get_lines() if line.get_linestyle() == "--"]
    assert [t.get_text() for t in fig.legends[0].get_texts()] == list(TASKS[:2])


# --- the paths


def test_paths_equal_aspect_wanted_path_and_abandoned_end():
    wanted, start, states, _ = synthetic_flight(40)
    lost = states.copy()
    lost[15:] = np.nan
    fig = ff.flight_paths(wanted, {"dense": states, "optimal (93%)": lost}, start, "track")
    (ax,) = fig.axes
    assert ax.get_aspect() == 1.0
    assert ax.get_xlabel() == "x (cm)" and ax.get_ylabel().startswith("y (cm")
    lines = {line.get_label(): line for line in ax.get_lines()}
    wanted_line = next(line for label, line in lines.items() if label.startswith("wanted"))
    assert wanted_line.get_linestyle() == "--" and wanted_line.get_markevery() == 10
    assert "optimal (93%), abandoned at 300 ms" in lines
    ends = [line for line in ax.get_lines() if line.get_marker() == "x" and len(line.get_xdata())]
    assert len(ends) == 1  # only the abandoned flight's end
    np.testing.assert_allclose([ends[0].get_xdata()[0], ends[0].get_ydata()[0]], lost[14, [0, 2]])
    starts = [line for line in ax.get_lines() if line.get_marker() == "*"]
    np.testing.assert_allclose([starts[0].get_xdata()[0], starts[0].get_ydata()[0]], [0, 0])
    legend = [text.get_text() for text in fig.legends[0].get_texts()]
    assert {"dense", "start", "flight abandoned"} <= set(legend)


# --- the animation


def near(pixels: np.ndarray, colour: str, tolerance: int = 10) -> np.ndarray:
    """Which pixels (h, w, 3) are within `tolerance` of `colour` in every channel."""
    rgb = np.array([int(colour[i : i + 2], 16) for i in (1, 3, 5)])
    return (np.abs(pixels.astype(int) - rgb) <= tolerance).all(axis=-1)


def test_animation_gif_frames_size_and_abandoned_panel(tmp_path):
    wanted, _, states, controls = synthetic_flight(12)
    lost_states, lost_controls = abandoned(states, controls, 6)
    path = tmp_path / "flight.gif"
    returned = ff.flight_animation(
        str(path),
        {"dense": (states, controls), "optimal (93%)": (lost_states, lost_controls)},
        wanted,
        "flower",
        body_scale=1.3,
    )
    assert returned == str(path)
    with Image.open(path) as gif:
        assert gif.n_frames == 13  # every state, the start's included
        width, height = gif.size
        assert width == round(ff.DPI * (3.4 * 2 + 0.4)) and 200 < height < 600
        assert gif.info["duration"] == 100 and gif.info["loop"] == 0  # 10 fps, repeating
        frames = []
        for i in (0, 12):
            gif.seek(i)
            frames.append(np.asarray(gif.convert("RGB")))
    assert not np.array_equal(frames[0], frames[1])
    half = width // 2
    # the head-thorax in full colour in both panels at first; once abandoned, faded on the right
    for frame, right in ((frames[0], True), (frames[1], False)):
        assert near(frame[:, :half], ff.BLUE).sum() > 20
        assert (near(frame[:, half:], ff.BLUE).sum() > 20) == right
    assert path.stat().st_size < 1_000_000


def test_animation_subsamples_long_flights(tmp_path):
    wanted, _, states, controls = synthetic_flight(150, noise=0.02)
    path = ff.flight_animation(str(tmp_path / "long.gif"), {"dense": (states, controls)}, wanted,
                               "long")  # fmt: skip
    with Image.open(path) as gif:
        assert gif.n_frames == ff.MAX_FRAMES == 60
        assert gif.size[0] == round(ff.DPI * (3.4 + 0.4))


def test_module_loads_without_jax_and_its_step_is_the_flights():
    code = (
        "import sys; import mothray.analysis.flight_figures as ff;"
        " assert 'jax' not in sys.modules, 'jax imported';"
        " from mothray.analysis.flight import STEP; assert ff.STEP_MS == 1000 * STEP"
    )
    subprocess.run([sys.executable, "-c", code], check=True)
