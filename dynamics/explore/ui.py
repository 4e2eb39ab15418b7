"""The live basin explorer's page: widgets, the basin map, the trajectory of a clicked start.

Panel lays the page out and Bokeh draws it; every number comes from
:mod:`dynamics.explore.compute` (this module draws, it never integrates). The same object is
served by ``python -m dynamics.explore`` and shown inline in a notebook
(``dynamics.explore.app()``).

A value that is not a setting (``eps <= 0``, a negative ``sigma2``, a start that is not two
numbers) is refused on the page: a message names it, and the map stays as it was.
"""

from __future__ import annotations

import html

import numpy as np
import panel as pn
from bokeh.events import Tap
from bokeh.models import ColumnDataSource, LinearColorMapper
from bokeh.plotting import figure

from dynamics.explore import compute
from dynamics.plot import FIXED_POINT_STYLE, OUTCOME_COLORS
from dynamics.types import Outcome

__all__ = ["Explorer", "app"]

#: Bokeh marker of each fixed-point kind (the colours are :data:`dynamics.plot.FIXED_POINT_STYLE`'s)
_MARKERS = {"stable": "circle", "saddle": "x", "unstable": "circle", "marginal": "square"}
#: the grid sizes offered
GRIDS = {"32 x 32": 32, "64 x 64": 64, "128 x 128": 128}


def _slider(key, name, value, start, end, step):
    return pn.widgets.EditableFloatSlider(name=name, value=value, start=start, end=end,
                                          step=step, sizing_mode="stretch_width",
                                          css_classes=[f"explore-{key}"])


class Explorer:
    """The widgets, the figures and what ties them: every change of a widget recomputes the
    basin map and the theory overlay, a click on the map (or a start typed into its field)
    integrates that start. ``layout`` is the Panel object to serve or show."""

    def __init__(self, settings: compute.Settings | None = None):
        s = self.settings = settings or compute.Settings()
        self.maps = 0          # maps drawn, shown on the page (a browser waits on it)
        self.trajectories = 0  # trajectories drawn
        self.start = None      # (theta0, phi0) of the trajectory shown
        self.widgets = dict(
            eps=_slider("eps", "eps: predictor time scale (tian: alpha_p = 1/eps)", s.eps,
                        0.01, 1.0, 0.01),
            eta=_slider("eta", "eta: weight decay", s.eta, 0.0, 0.3, 0.005),
            sigma2=_slider("sigma2", "sigma2: augmentation noise variance", s.sigma2,
                           0.0, 2.0, 0.05),
            beta=_slider("beta", "beta: EMA rate of BYOL's target", s.beta, 0.0, 5.0, 0.1),
            variant=pn.widgets.Select(name="variant (-nosg: without stop-gradient)",
                                      value=s.variant, options=list(compute.VARIANT_NAMES)),
            convention=pn.widgets.Select(name="weight-decay convention", value=s.convention,
                                         options=["loss", "tian"]),
            model=pn.widgets.Select(name="model", value=s.model, options=list(compute.MODELS)),
            n=pn.widgets.Select(name="grid of starts", value=s.n,
                                options=dict(GRIDS, **{f"{s.n} x {s.n}": s.n})),
        )
        for name in ("variant", "convention", "model", "n"):
            self.widgets[name].css_classes = [f"explore-{name}"]
        self.start_input = pn.widgets.TextInput(
            name="start (theta0, phi0): type and press Enter, or click the map",
            placeholder="0.5, 0.3", sizing_mode="stretch_width", css_classes=["explore-start"])
        self.message = pn.pane.Alert("", alert_type="danger", visible=False,
                                     css_classes=["explore-message"], sizing_mode="stretch_width")
        self.status = pn.pane.HTML("", css_classes=["explore-status"], sizing_mode="stretch_width")
        self.traj_status = pn.pane.HTML("", css_classes=["explore-trajectory"],
                                        sizing_mode="stretch_width")
        self._build_figures()
        for name, w in self.widgets.items():
            w.param.watch(self._on_change, "value")
        self.start_input.param.watch(self._on_start_typed, "value")
        self.map_fig.on_event(Tap, self._on_tap)
        legend = " ".join(
            f'<span style="display:inline-block;width:0.8em;height:0.8em;background:{c}"></span> '
            f"{o.label}" for c, o in zip(OUTCOME_COLORS, Outcome))
        self.layout = pn.Row(
            pn.Column(*self.widgets.values(), self.start_input, self.message, width=340),
            pn.Column(self.status,
                      pn.Column(pn.pane.Bokeh(self.map_fig), css_classes=["explore-map"]),
                      pn.pane.HTML(legend), self.traj_status,
                      pn.Column(pn.pane.Bokeh(self.time_fig), css_classes=["explore-time"])),
        )
        self.redraw(s)

    # --- figures ------------------------------------------------------------------------------

    def _build_figures(self):
        s = self.settings
        self.map_fig = figure(width=520, height=440, x_range=s.theta_range, y_range=s.phi_range,
                              tools="", toolbar_location=None, title="collapse basins",
                              x_axis_label="theta0 (encoder)", y_axis_label="phi0 (predictor)")
        self.image = ColumnDataSource(dict(image=[np.zeros((2, 2))], x=[0.0], y=[0.0], dw=[1.0],
                                           dh=[1.0]))
        mapper = LinearColorMapper(palette=list(OUTCOME_COLORS), low=-0.5, high=3.5)
        self.map_fig.image(image="image", x="x", y="y", dw="dw", dh="dh", source=self.image,
                           color_mapper=mapper)
        self.separatrix = ColumnDataSource(dict(xs=[], ys=[]))
        self.map_fig.multi_line("xs", "ys", source=self.separatrix, color="black", line_width=2,
                                legend_label="separatrix (theory)")
        self.fixed = ColumnDataSource(dict(x=[], y=[], kind=[], line=[], fill=[], marker=[]))
        self.map_fig.scatter("x", "y", source=self.fixed, marker="marker", size=11,
                             line_color="line", fill_color="fill", line_width=2,
                             legend_field="kind")
        self.path = ColumnDataSource(dict(x=[], y=[]))
        self.map_fig.line("x", "y", source=self.path, color="#ffd92f", line_width=3,
                          legend_label="trajectory")
        self.path_start = ColumnDataSource(dict(x=[], y=[]))
        self.map_fig.scatter("x", "y", source=self.path_start, marker="triangle", size=12,
                             color="#ffd92f", line_color="black")
        self.map_fig.legend.location = "top_left"
        self.map_fig.legend.background_fill_alpha = 0.7
        self.map_fig.legend.label_text_font_size = "8pt"
        self.time_fig = figure(width=520, height=220, tools="", toolbar_location=None,
                               title="time course of the clicked start", x_axis_label="t",
                               y_axis_label="weight")
        self.course = ColumnDataSource(dict(t=[], theta=[], phi=[], theta_a=[]))
        for key, color, label in (("theta", "#3b6fb6", "theta (encoder)"),
                                  ("phi", "#d1495b", "phi (predictor)"),
                                  ("theta_a", "#999999", "theta_a (target)")):
            self.time_fig.line("t", key, source=self.course, color=color, line_width=2,
                               legend_label=label)
        self.time_fig.legend.label_text_font_size = "8pt"

    # --- events -------------------------------------------------------------------------------

    def values(self) -> dict:
        """The widgets' values, as :class:`~dynamics.explore.compute.Settings` fields."""
        return {k: w.value for k, w in self.widgets.items()}

    def _refuse(self, error):
        self.message.object = str(error)
        self.message.visible = True

    def _on_change(self, *events):
        try:
            settings = self.settings.replace(**self.values())
        except ValueError as e:
            self._refuse(e)
            return
        self.redraw(settings)

    def _on_tap(self, event):
        self.show_trajectory(event.x, event.y)

    def _on_start_typed(self, event):
        if not str(event.new).strip():
            return
        try:
            theta0, phi0 = compute.parse_start(event.new)
        except ValueError as e:
            self._refuse(e)
            return
        self.show_trajectory(theta0, phi0)

    # --- drawing ------------------------------------------------------------------------------

    def redraw(self, settings: compute.Settings):
        """Recompute the map, the theory overlay and the shown trajectory for ``settings``."""
        b = compute.basin(settings)
        th = compute.theory(settings)
        tr = None if self.start is None else compute.trajectory(settings, *self.start)
        self.settings = settings
        self.maps += 1
        dx = (b.theta0[-1] - b.theta0[0]) / (len(b.theta0) - 1)
        dy = (b.phi0[-1] - b.phi0[0]) / (len(b.phi0) - 1)
        with pn.io.hold():
            self.image.data = dict(image=[b.outcome.astype(float)], x=[b.theta0[0] - dx / 2],
                                   y=[b.phi0[0] - dy / 2], dw=[dx * len(b.theta0)],
                                   dh=[dy * len(b.phi0)])
            self.separatrix.data = dict(xs=[list(m[:, 0]) for m in th.separatrix],
                                        ys=[list(m[:, 1]) for m in th.separatrix])
            self.fixed.data = dict(
                x=[p[0] for p in th.fixed], y=[p[1] for p in th.fixed],
                kind=[FIXED_POINT_STYLE[p[2]]["label"] for p in th.fixed],
                line=[FIXED_POINT_STYLE[p[2]]["color"] for p in th.fixed],
                fill=[FIXED_POINT_STYLE[p[2]]["markerfacecolor"] for p in th.fixed],
                marker=[_MARKERS[p[2]] for p in th.fixed])
            if tr is not None:
                self._draw_trajectory(tr)
            s = settings
            rate = (f"eps = {s.eps:g} (alpha_p = {s.alpha_p:g})" if s.convention == "tian"
                    else f"eps = {s.eps:g}")
            shares = ", ".join(f"{o.label} {b.share(o):.1%}" for o in Outcome)
            note = f"; {th.note}" if th.note else ""
            self.status.object = (
                f'<span data-map="{self.maps}">map {self.maps}: {html.escape(s.variant)}, '
                f"{s.model}, {s.convention} convention, {rate}, eta = {s.eta:g}, "
                f"sigma2 = {s.sigma2:g}, beta = {s.beta:g}; {s.n} x {s.n} starts to "
                f"t1 = {s.t1:g} in {b.seconds:.2f} s: {shares}{html.escape(note)}</span>")
            self.message.visible = False

    def show_trajectory(self, theta0, phi0):
        """Integrate the start ``(theta0, phi0)`` and draw it on the map and in time."""
        try:
            tr = compute.trajectory(self.settings, theta0, phi0)
        except ValueError as e:
            self._refuse(e)
            return
        self.start = (tr.theta0, tr.phi0)
        with pn.io.hold():
            self._draw_trajectory(tr)
            self.message.visible = False

    def _draw_trajectory(self, tr):
        self.trajectories += 1
        self.path.data = dict(x=list(tr.theta), y=list(tr.phi))
        self.path_start.data = dict(x=[tr.theta0], y=[tr.phi0])
        self.course.data = dict(t=list(tr.t), theta=list(tr.theta), phi=list(tr.phi),
                                theta_a=list(tr.theta_a) if self.settings.variant.startswith("byol")
                                else [np.nan] * len(tr.t))
        self.traj_status.object = (
            f'<span data-trajectory="{self.trajectories}">trajectory {self.trajectories}: start '
            f"theta0 = {tr.theta0:.4g}, phi0 = {tr.phi0:.4g}; at t1: theta = {tr.theta[-1]:.4g}, "
            f"phi = {tr.phi[-1]:.4g}: {tr.outcome.label}</span>")


def app(settings: compute.Settings | None = None, **changes):
    """The explorer's page as a Panel object (serve it, or show it in a notebook): starts at
    ``settings`` (default :class:`~dynamics.explore.compute.Settings`) with ``changes``."""
    s = (settings or compute.Settings()).replace(**changes)
    return Explorer(s).layout
