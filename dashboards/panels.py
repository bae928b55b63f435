"""Small, typed constructors for the panels our dashboards use, and the board they go on.

A dashboard module describes its panels with these and nothing else, so every panel gets
the same datasource, a unique id and a place on the grid without repeating the plumbing.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from grafana_foundation_sdk.builders import (
    bargauge,
    common,
    geomap,
    prometheus,
    stat,
    table,
    timeseries,
)
from grafana_foundation_sdk.builders import dashboard as db
from grafana_foundation_sdk.cog import builder as cogbuilder
from grafana_foundation_sdk.models import common as common_models
from grafana_foundation_sdk.models import dashboard as dm
from grafana_foundation_sdk.models import geomap as geomap_models

from dashboards.sql import Format, Sql, datasource, prometheus_datasource

# Grafana's grid is 24 columns wide.
GRID_COLUMNS = 24

PanelBuilder = stat.Panel | timeseries.Panel | table.Panel | geomap.Panel | bargauge.Panel


@dataclass
class Board:
    """A dashboard under construction: panels are numbered in the order they are added."""

    uid: str
    title: str
    description: str
    tags: list[str]
    default_from: str = "now-6h"
    refresh: str = "1m"
    _builder: db.Dashboard = field(init=False)
    _next_id: int = field(init=False, default=1)

    def __post_init__(self) -> None:
        self._builder = (
            db.Dashboard(self.title)
            .uid(self.uid)
            .description(self.description)
            .tags(self.tags)
            .time(self.default_from, "now")
            .refresh(self.refresh)
            .timezone("browser")
            .readonly()
        )

    def variable(self, variable: cogbuilder.Builder[dm.VariableModel]) -> None:
        self._builder.with_variable(variable)

    def row(self, title: str) -> None:
        self._builder.with_row(db.Row(title).id(self._take_id()))

    def add(
        self,
        panel: PanelBuilder,
        *,
        width: int,
        height: int,
        source: dm.DataSourceRef | None = None,
    ) -> None:
        """Place `panel`; it reads the PostgreSQL datasource unless `source` says otherwise."""
        if not 0 < width <= GRID_COLUMNS:
            raise ValueError(f"panel width {width} is outside 1..{GRID_COLUMNS}")
        self._builder.with_panel(
            panel.id(self._take_id()).datasource(source or datasource()).span(width).height(height)
        )

    def build(self) -> dm.Dashboard:
        return self._builder.build()

    def _take_id(self) -> int:
        panel_id = self._next_id
        self._next_id += 1
        return panel_id


def query_variable(
    name: str, label: str, sql: str, *, multi: bool = False, include_all: bool = False
) -> db.QueryVariable:
    """A variable whose options come from a SQL query (refreshed when the dashboard loads)."""
    return (
        db.QueryVariable(name)
        .label(label)
        .datasource(datasource())
        .query(sql.strip())
        .refresh(dm.VariableRefresh.ON_DASHBOARD_LOAD)
        .sort(dm.VariableSort.ALPHABETICAL_ASC)
        .multi(multi)
        .include_all(include_all)
    )


def stat_panel(
    title: str, sql: str, *, unit: str = "none", description: str = "", color: str = "green"
) -> stat.Panel:
    """One number (the first row's value), coloured `color`."""
    return (
        stat.Panel()
        .title(title)
        .description(description)
        .with_target(Sql(sql))
        .unit(unit)
        .color_scheme(db.FieldColor().mode(dm.FieldColorModeId.FIXED).fixed_color(color))
        .graph_mode(common_models.BigValueGraphMode.NONE)
        .reduce_options(common.ReduceDataOptions().calcs(["lastNotNull"]).values(False))
    )


def timeseries_panel(
    title: str, sql: str, *, unit: str = "none", description: str = ""
) -> timeseries.Panel:
    """A time series from a query returning time, metric and value columns (long format)."""
    return (
        timeseries.Panel()
        .title(title)
        .description(description)
        .with_target(Sql(sql, fmt=Format.TIME_SERIES))
        .unit(unit)
        .fill_opacity(10)
        .show_points(common_models.VisibilityMode.NEVER)
    )


def prom_timeseries_panel(
    title: str, queries: list[tuple[str, str]], *, unit: str = "none", description: str = ""
) -> timeseries.Panel:
    """A time series of PromQL `queries`, each (expression, legend); put it on the board with
    `source=prometheus_datasource()`."""
    panel = (
        timeseries.Panel()
        .title(title)
        .description(description)
        .unit(unit)
        .fill_opacity(10)
        .show_points(common_models.VisibilityMode.NEVER)
    )
    for i, (expr, legend) in enumerate(queries):
        panel.with_target(
            prometheus.Dataquery()
            .datasource(prometheus_datasource())
            .expr(expr)
            .legend_format(legend)
            .range()
            .ref_id(chr(ord("A") + i))
        )
    return panel


def table_panel(title: str, sql: str, *, description: str = "") -> table.Panel:
    return (
        table.Panel()
        .title(title)
        .description(description)
        .with_target(Sql(sql))
        # Grafana's own defaults, set explicitly so the JSON round-trips through the SDK.
        .align(common_models.FieldTextAlignment.AUTO)
        .inspect(False)
    )


def bar_panel(title: str, sql: str, *, unit: str = "none", description: str = "") -> bargauge.Panel:
    """Horizontal bars, one per row of a (label, value) query."""
    return (
        bargauge.Panel()
        .title(title)
        .description(description)
        .with_target(Sql(sql))
        .unit(unit)
        .orientation(common_models.VizOrientation.HORIZONTAL)
        .reduce_options(common.ReduceDataOptions().calcs(["lastNotNull"]).values(True))
    )


@dataclass(frozen=True)
class State:
    """One value of a coded state column: how a map or table shows it."""

    code: int
    text: str
    color: str


def state_mappings(states: list[State]) -> list[dm.ValueMapping]:
    return [
        dm.ValueMap(
            options={
                str(s.code): dm.ValueMappingResult(text=s.text, color=s.color, index=i)
                for i, s in enumerate(states)
            }
        )
    ]


def points_map(
    title: str,
    sql: str,
    *,
    state_field: str,
    states: list[State],
    description: str = "",
) -> geomap.Panel:
    """A map of points (latitude, longitude columns) coloured by a coded state column,
    zoomed to fit the points (so one panel serves every city)."""
    layer = (
        common.MapLayerOptions()
        .type("markers")
        .name("state")
        .location(
            common.FrameGeometrySource()
            .mode(common_models.FrameGeometrySourceMode.COORDS)
            .latitude("latitude")
            .longitude("longitude")
        )
        .config(
            {
                "showLegend": True,
                "style": {
                    "color": {"field": state_field, "fixed": "dark-green"},
                    "size": {"fixed": 4},
                    "opacity": 0.8,
                },
            }
        )
        .tooltip(True)
    )
    return (
        geomap.Panel()
        .title(title)
        .description(description)
        .with_target(Sql(sql))
        .view(geomap.MapViewConfig().id("fit").all_layers(True).zoom(12))
        .basemap(common.MapLayerOptions().type("default").name("Basemap"))
        .layers([layer])
        .tooltip(geomap.TooltipOptions().mode(geomap_models.TooltipMode.DETAILS))
        .mappings(state_mappings(states))
        .color_scheme(db.FieldColor().mode(dm.FieldColorModeId.THRESHOLDS))
    )
