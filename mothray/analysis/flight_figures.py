"""Figures of closed-loop flight (`mothray.analysis.flight`): how flight success and final
error change with sparsity (the flight landscape), flown paths against the wanted one in the
x-y plane, and an animated GIF of the two-body moth (moth-model.md's geometry) flying them.
Pure functions of arrays, drawn headless (Agg, no pyplot) in the house style of
`mothray.analysis.figures`. numpy and matplotlib only: no JAX.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import matplotlib as mpl
import numpy as np
from matplotlib.axes import Axes
from matplotlib.figure import Figure
from matplotlib.lines import Line2D
from matplotlib.patches import Ellipse, FancyArrow
from PIL import Image

from mothray.analysis.figures import (
    BLUE,
    GREY,
    ORANGE,
    PALETTE,
    STYLE,
    VERMILION,
    figure,
    legend_below,
)
from mothray.moth.parameters import MothParameters

STEP_MS = 20.0  # ms: one control step (`flight.STEP`, not imported: it would load JAX)
ARROW_CM_PER_DYN = 1e-4  # the force arrow: 1 cm per 10,000 dyn at body scale 1
MAX_FRAMES = 60  # an animation's frames at most: longer flights are subsampled
DPI = 80  # an animation's resolution: small GIFs


def flight_landscape(
    sparsity: np.ndarray,
    tasks: Sequence[str],
    success: np.ndarray,
    lasted: np.ndarray,
    duration: float,
    threshold_level: int | None,
    title: str,
) -> Figure:
    """Flight quality against sparsity, one line per task: the share of flights that
    succeeded (top) and how long flights stayed within the bound (bottom), each the median
    over networks with the interquartile range shaded. `success` (T, L, K) is each network's
    fraction of successful flights, `lasted` (T, L, K) its flights' mean time within the bound
    in ms, of `duration` ms; NaN marks a level not computed, skipped. `threshold_level`: the
    modal optimal level, marked with a dashed line (None: not marked)."""
    sparsity = np.asarray(sparsity, np.float64)
    percent = 100 * sparsity
    with mpl.rc_context(STYLE):
        fig = figure(8, 6.5)
        rate, time = fig.subplots(2, 1, sharex=True)
        for t, task in enumerate(tasks):
            color = PALETTE[t % len(PALETTE)]
            for ax, values in ((rate, 100 * np.asarray(success[t], np.float64)),
                               (time, np.asarray(lasted[t], np.float64))):  # fmt: skip
                levels, quartiles = _quartiles(values)
                _draw_band(ax, percent[levels], quartiles, color, task)
        if threshold_level is not None:
            at = percent[threshold_level]
            for ax in (rate, time):
                ax.axvline(at, color=GREY, ls="--", lw=1.2,
                           label=f"modal optimal sparsity ({at:.0f}%)")  # fmt: skip
        rate.set_ylabel("successful flights (% of flights)")
        rate.set_ylim(-3, 103)
        rate.set_title("flights that stayed within the bound of their targets all along")
        time.set_ylabel("time within the bound (ms)")
        time.set_ylim(-0.03 * duration, 1.03 * duration)
        time.set_xlabel("sparsity (% of each layer's weights removed)")
        time.set_title(
            f"how long flights stayed within the bound (mean per network, of {duration:g} ms)"
        )
        fig.suptitle(f"{title}: median over networks (shaded: interquartile range)")
        legend_below(fig, [rate])
    return fig


def _quartiles(values: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The levels (L, K) with any network's value, and (3, L') their quartiles over the
    networks, NaN-aware: a level not computed (all NaN) is left out, without a warning."""
    computed = ~np.isnan(values).all(axis=1)
    levels = np.flatnonzero(computed)
    if not levels.size:
        return levels, np.empty((3, 0))
    return levels, np.nanpercentile(values[levels], [25, 50, 75], axis=1)


def _draw_band(ax: Axes, x: np.ndarray, quartiles: np.ndarray, color: str, label: str) -> None:
    """A median line with markers over its interquartile band, on `ax`."""
    ax.fill_between(x, quartiles[0], quartiles[2], color=color, alpha=0.18, lw=0)
    ax.plot(x, quartiles[1], color=color, marker="o", ms=4, lw=1.5, label=label)


def flight_paths(
    wanted: np.ndarray,
    flown: Mapping[str, np.ndarray],
    start: np.ndarray,
    title: str,
) -> Figure:
    """Flown paths of the joint (label -> states (steps + 1, 8)) against the wanted one
    (steps, 8) in the x-y plane, from `start` (8,); where a flight was abandoned (NaN from
    there on), its last position is marked with an x."""
    wanted = np.asarray(wanted, np.float64)
    start = np.asarray(start, np.float64)
    with mpl.rc_context(STYLE):
        fig = figure(6.5, 6)
        ax = fig.add_subplot()
        path = np.vstack([start, wanted])
        ax.plot(path[:, 0], path[:, 2], color=GREY, ls="--", lw=1.2, marker="o", ms=4,
                markevery=10, label="wanted (dots: every 10 steps, 200 ms)")  # fmt: skip
        for i, (label, states) in enumerate(flown.items()):
            states = np.asarray(states, np.float64)
            color = PALETTE[i % len(PALETTE)]
            ends = _abandoned_at(states)
            name = label if ends is None else f"{label}, abandoned at {ends * STEP_MS:.0f} ms"
            ax.plot(states[:, 0], states[:, 2], color=color, lw=1.5, label=name)
            if ends is not None:
                last = states[max(ends - 1, 0)]
                ax.plot(last[0], last[2], ls="none", marker="x", ms=10, mew=2.5, color=color)
        ax.plot(start[0], start[2], ls="none", marker="*", ms=14, color="black", label="start")
        ax.plot([], [], ls="none", marker="x", ms=8, mew=2, color=GREY, label="flight abandoned")
        ax.set_aspect("equal", adjustable="datalim")
        ax.set_xlabel("x (cm)")
        ax.set_ylabel("y (cm, up)")
        ax.set_title(title)
        legend_below(fig, [ax], ncols=2)
    return fig


def _abandoned_at(states: np.ndarray) -> int | None:
    """The first step whose state (steps + 1, 8) is not finite (the flight was abandoned
    there), or None if it flew to the end."""
    lost = ~np.isfinite(states).all(axis=1)
    return int(np.argmax(lost)) if lost.any() else None


def moth_outline(
    state: np.ndarray,
    controls: np.ndarray | None,
    body_scale: float = 1.0,
    params: MothParameters = MothParameters(),  # noqa: B008 - frozen
) -> dict:
    """The moth's outline at `state` (8,) as geometry (moth-model.md), lengths times
    `body_scale`: per body ("head", "abdomen") its centre, width and height (cm: the long
    axis' full length, the short one's) and angle (degrees), as `matplotlib.patches.Ellipse`
    takes them; and the wing force of `controls` (F, α, τ) as an arrow ("arrow": its base at
    L3 along the head-thorax axis and its vector along α + θ, ARROW_CM_PER_DYN cm per dyn
    times the scale; None without controls)."""
    x, _, y, _, theta, _, phi, _ = np.asarray(state, np.float64)
    s = float(body_scale)

    def ellipse(distance: float, angle: float, major: float, minor: float) -> dict:
        centre = np.array([x + s * distance * np.cos(angle), y + s * distance * np.sin(angle)])
        return {"center": centre, "width": 2 * s * major, "height": 2 * s * minor,
                "angle": float(np.degrees(angle))}  # fmt: skip

    outline = {
        "head": ellipse(params.L1, theta, params.a_head, params.b_head),
        "abdomen": ellipse(params.L2, phi, params.a_abd, params.b_abd),
        "arrow": None,
    }
    if controls is not None:
        force, alpha, _ = np.asarray(controls, np.float64)
        direction = alpha + theta
        outline["arrow"] = {
            "base": np.array(
                [x + s * params.L3 * np.cos(theta), y + s * params.L3 * np.sin(theta)]
            ),
            "vector": s
            * ARROW_CM_PER_DYN
            * force
            * np.array([np.cos(direction), np.sin(direction)]),
        }
    return outline


def flight_animation(
    path: str,
    panels: Mapping[str, tuple[np.ndarray, np.ndarray]],
    wanted: np.ndarray,
    title: str,
    body_scale: float = 1.0,
    fps: int = 10,
) -> str:
    """Write a GIF to `path` of each panel's flight (label -> states (steps + 1, 8),
    controls (steps, 3)) side by side: the two-body moth with its wing force, the position
    wanted next (`wanted` (steps, 8)) and the trail flown so far, on fixed axes in cm. A
    flight abandoned shows so from then on. At most MAX_FRAMES frames (steps subsampled).
    Returns `path`."""
    wanted = np.asarray(wanted, np.float64)
    flights = {label: (np.asarray(s, np.float64), np.asarray(c, np.float64))
               for label, (s, c) in panels.items()}  # fmt: skip
    steps = len(wanted)
    frames = np.unique(np.linspace(0, steps, min(steps + 1, MAX_FRAMES)).round().astype(int))
    limits = _limits(flights, wanted, body_scale)
    with mpl.rc_context(STYLE):
        fig = _animation_figure(len(flights), limits)
        axes = np.atleast_1d(fig.subplots(1, len(flights), sharex=True, sharey=True))
        drawers = [
            _panel(ax, label, states, controls, wanted, limits, body_scale)
            for ax, (label, (states, controls)) in zip(axes, flights.items(), strict=True)
        ]
        fig.suptitle(title)
        legend_below(fig, [axes[0]], ncols=3)
        images = _blitted_frames(fig, drawers, frames)
    images = _shared_palette(images)
    images[0].save(path, save_all=True, append_images=images[1:], duration=round(1000 / fps),
                   loop=0, optimize=True)  # fmt: skip
    return path


def _shared_palette(images: list[Image.Image], colours: int = 64) -> list[Image.Image]:
    """The frames in one palette of `colours`, taken from the first, middle and last frames
    (the faded and abandoned states included), undithered: a small GIF, steady colours."""
    samples = [images[0], images[len(images) // 2], images[-1]]
    width, height = images[0].size
    montage = Image.new("RGB", (width, height * len(samples)))
    for i, image in enumerate(samples):
        montage.paste(image, (0, i * height))
    palette = montage.quantize(colours, method=Image.Quantize.MEDIANCUT)
    return [image.quantize(palette=palette, dither=Image.Dither.NONE) for image in images]


def _animation_figure(panels: int, limits: tuple[tuple[float, float], ...]) -> Figure:
    """A figure at DPI for `panels` equal-aspect panels side by side, its height following
    the data's shape (within bounds) so that the panels fill it."""
    (x0, x1), (y0, y1) = limits
    width = 3.4
    height = float(np.clip(width * (y1 - y0) / (x1 - x0), 2.4, 4.8)) + 1.6  # + text rows
    fig = figure(width * panels + 0.4, height)
    fig.set_dpi(DPI)
    return fig


def _blitted_frames(fig: Figure, drawers: Sequence, frames: Sequence[int]) -> list[Image.Image]:
    """The figure's frames as images: the static artists drawn once (the layout then frozen),
    each frame only its moving (animated) artists blitted over them: one full draw in all."""
    fig.canvas.draw()
    fig.set_layout_engine("none")  # frozen: the frames must not move
    canvas = fig.canvas
    background = canvas.copy_from_bbox(fig.bbox)
    images = []
    for frame in frames:
        canvas.restore_region(background)
        for draw in drawers:
            for artist in draw(int(frame)):
                artist.axes.draw_artist(artist)
        rgba = np.asarray(canvas.buffer_rgba())
        images.append(Image.fromarray(rgba[..., :3].copy()))
    return images


def _limits(
    flights: Mapping[str, tuple[np.ndarray, np.ndarray]], wanted: np.ndarray, body_scale: float
) -> tuple[tuple[float, float], tuple[float, float]]:
    """Axis limits (x, y) in cm covering every finite joint position, wanted position and
    force arrow's tip, with room for the body around them."""
    points = [wanted[:, [0, 2]]]
    for states, controls in flights.values():
        points.append(states[:, [0, 2]])
        for state, control in zip(states[:-1], controls, strict=True):
            if np.isfinite(state).all() and np.isfinite(control).all():
                arrow = moth_outline(state, control, body_scale)["arrow"]
                points.append((arrow["base"] + arrow["vector"])[None])
    points = np.vstack(points)
    points = points[np.isfinite(points).all(axis=1)]
    params = MothParameters()
    pad = body_scale * (params.L2 + params.a_abd) + 0.3
    low, high = points.min(axis=0) - pad, points.max(axis=0) + pad
    return (float(low[0]), float(high[0])), (float(low[1]), float(high[1]))


def _panel(ax: Axes, label: str, states, controls, wanted, limits, body_scale: float):
    """Set up one flight's panel on `ax`: the static parts drawn, the moving ones animated;
    returns the function setting its frame `k` (the state after k steps), which returns the
    moving artists."""
    s = body_scale
    ax.set_xlim(*limits[0])
    ax.set_ylim(*limits[1])
    ax.set_aspect("equal", adjustable="box")
    ax.set_xlabel("x (cm)")
    ax.set_ylabel("y (cm, up)")
    ax.set_title(label)
    ax.plot(wanted[:, 0], wanted[:, 2], color=GREY, lw=0.8, ls=":", label="wanted path")
    (trail,) = ax.plot([], [], color=BLUE, lw=1.4, alpha=0.8, label="flown trail")
    (target,) = ax.plot([], [], ls="none", marker="+", ms=11, mew=2, color=VERMILION,
                        label="wanted next (20 ms on)")  # fmt: skip
    head = ax.add_patch(Ellipse((0, 0), 1, 1, fc=BLUE, ec="black", lw=0.6, label="head-thorax"))
    abdomen = ax.add_patch(Ellipse((0, 0), 1, 1, fc=ORANGE, ec="black", lw=0.6, label="abdomen"))
    arrow = ax.add_patch(FancyArrow(0, 0, 1, 0, width=0.08 * s, head_width=0.35 * s,
                                    head_length=0.35 * s, length_includes_head=True,
                                    color="black"))  # fmt: skip
    ax.add_line(Line2D([], [], ls="none", marker=r"$\longrightarrow$", ms=18, color="black",
                       label=f"wing force ({s:g} cm per 10⁴ dyn)"))  # fmt: skip
    clock = ax.text(0.03, 0.97, "", transform=ax.transAxes, va="top")
    lost = ax.text(0.03, 0.90, "", transform=ax.transAxes, va="top", color=VERMILION,
                   fontweight="bold")  # fmt: skip
    moving = [trail, abdomen, head, arrow, target, clock, lost]  # in drawing order
    for artist in moving:
        artist.set_animated(True)
    ends = _abandoned_at(states)
    steps = len(wanted)

    def draw(k: int) -> list:
        shown = k if ends is None or k < ends else max(ends - 1, 0)
        flown = states[: shown + 1]
        trail.set_data(flown[:, 0], flown[:, 2])
        aim = wanted[min(k, steps - 1)]
        target.set_data([aim[0]], [aim[2]])
        flying = shown == k
        control = controls[k] if flying and k < steps else None
        if control is not None and not np.isfinite(control).all():
            control = None
        outline = moth_outline(states[shown], control, s)
        for patch, body in ((head, outline["head"]), (abdomen, outline["abdomen"])):
            patch.set_center(body["center"])
            patch.set_width(body["width"])
            patch.set_height(body["height"])
            patch.set_angle(body["angle"])
            patch.set_alpha(1.0 if flying else 0.35)
        if outline["arrow"] is not None:
            (bx, by), (dx, dy) = outline["arrow"]["base"], outline["arrow"]["vector"]
            arrow.set_data(x=bx, y=by, dx=dx, dy=dy)
        arrow.set_visible(outline["arrow"] is not None)
        clock.set_text(f"t = {k * STEP_MS:.0f} ms")
        lost.set_text("" if flying else f"abandoned at t = {ends * STEP_MS:.0f} ms")
        return moving

    draw(0)
    return draw
