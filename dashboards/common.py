"""What the three dashboards share: data sources, template variables, query and panel builders,
the panel ids that alert links point at, and the JSON the dashboards are written as.

Queries filter every window series by the template variables ``model``, ``version``
(regex matchers: several values or All) and ``window`` (one value). The pipeline
counters carry ``model``, ``reason`` or ``sink`` only, so they are filtered by ``model``
where they have it.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from typing import Any

from grafana_foundation_sdk.builders import dashboard as gd
from grafana_foundation_sdk.builders import elasticsearch as es
from grafana_foundation_sdk.builders import prometheus as prom
from grafana_foundation_sdk.cog.encoder import JSONEncoder
from grafana_foundation_sdk.models import dashboard as dm
from grafana_foundation_sdk.models.dashboard import DataSourceRef

__all__ = [
    "DATA_SCIENCE_UID",
    "ES_KINDS",
    "EXECUTIVE_UID",
    "EXPLAINING_PANEL",
    "PROMETHEUS",
    "TECHNICAL_UID",
    "Board",
    "DataLink",
    "PanelId",
    "elasticsearch",
    "es_target",
    "dashboard_link",
    "explain_url",
    "prom_target",
    "row_model_url",
    "selector",
    "thresholds",
    "to_json",
    "variables",
]

#: The Prometheus data source of ``deploy/grafana/provisioning/datasources``.
PROMETHEUS = DataSourceRef(type_val="prometheus", uid="ampel-prometheus")
#: One Elasticsearch data source per index alias (kind): uid ``ampel-es-<kind>``, index ``ampel-<kind>``.
ES_KINDS = ("metrics", "quality", "alerts", "decisions", "dead_letters")

EXECUTIVE_UID = "ampel-executive"
TECHNICAL_UID = "ampel-technical"
DATA_SCIENCE_UID = "ampel-data-science"


def elasticsearch(kind: str) -> DataSourceRef:
    """The data source of the ``ampel-<kind>`` alias."""
    if kind not in ES_KINDS:
        raise ValueError(f"kind should be one of {list(ES_KINDS)}, got {kind!r}")
    return DataSourceRef(type_val="elasticsearch", uid=f"ampel-es-{kind.replace('_', '-')}")


class PanelId:
    """Panel ids that links point at (``viewPanel=panel-<id>``); every other panel gets a
    larger id in the order it is added."""

    # technical
    LATENCY = 2
    THROUGHPUT = 3
    ERROR_RATE = 4
    RESOURCES = 5
    # data science
    PSI_HEATMAP = 2
    JS_HEATMAP = 3
    KS_HEATMAP = 4
    QUALITY = 10
    BIAS = 14
    IMPORTANCE = 17
    FIRST_FREE = 30


#: The panel that explains each alert rule: (dashboard uid, panel id).
EXPLAINING_PANEL: dict[str, tuple[str, int]] = {
    "latency_p95": (TECHNICAL_UID, PanelId.LATENCY),
    "error_rate": (TECHNICAL_UID, PanelId.ERROR_RATE),
    "resource_utilisation": (TECHNICAL_UID, PanelId.RESOURCES),
    "data_drift": (DATA_SCIENCE_UID, PanelId.PSI_HEATMAP),
    "feature_drift": (DATA_SCIENCE_UID, PanelId.JS_HEATMAP),
    "accuracy_drop": (DATA_SCIENCE_UID, PanelId.QUALITY),
    "concept_drift": (DATA_SCIENCE_UID, PanelId.QUALITY),
    "disparate_impact": (DATA_SCIENCE_UID, PanelId.BIAS),
    "importance_shift": (DATA_SCIENCE_UID, PanelId.IMPORTANCE),
}

_SLUGS = {EXECUTIVE_UID: "ampel-executive", TECHNICAL_UID: "ampel-technical", DATA_SCIENCE_UID: "ampel-data-science"}


def explain_url(rule: str, model: str = "${__field.labels.model}") -> str:
    """The link from an alert of ``rule`` to the panel that explains it, for ``model``,
    keeping the time range and the version and window variables."""
    uid, panel = EXPLAINING_PANEL[rule]
    return (f"/d/{uid}/{_SLUGS[uid]}?viewPanel=panel-{panel}&var-model={model}"
            "&${version:queryparam}&${window:queryparam}&${__url_time_range}")


def row_model_url(uid: str) -> str:
    """A data link from a table row (an alert) to a dashboard for the row's model and version,
    keeping the window variable and the time range."""
    return (f"/d/{uid}/{_SLUGS[uid]}?var-model=" + "${__data.fields.model}&var-version=${__data.fields.version}"
            "&${window:queryparam}&${__url_time_range}")


def selector(*extra: str, version: bool = True, window: bool = True) -> str:
    """The label matchers of a window series under the template variables.

    >>> selector('feature="x"')
    '{model=~"$model",version=~"$version",window="$window",feature="x"}'
    """
    parts = ['model=~"$model"']
    if version:
        parts.append('version=~"$version"')
    if window:
        parts.append('window="$window"')
    return "{" + ",".join([*parts, *extra]) + "}"


def prom_target(expr: str, legend: str = "", ref: str = "A", instant: bool = False) -> prom.Dataquery:
    query = prom.Dataquery().expr(expr).ref_id(ref).datasource(PROMETHEUS)
    if legend:
        query = query.legend_format(legend)
    return query.instant() if instant else query.range()


def es_target(kind: str, query: str, metrics: Sequence[Any], buckets: Sequence[Any] = (), ref: str = "A") -> es.Dataquery:
    target = (es.Dataquery().ref_id(ref).datasource(elasticsearch(kind)).query(query).time_field("@timestamp")
              .metrics(list(metrics)))
    if buckets:
        target = target.bucket_aggs(list(buckets))
    return target


def thresholds(*steps: tuple[float | None, str]) -> gd.ThresholdsConfig:
    """Absolute thresholds: ``(None, "green"), (0.1, "red")`` = red from 0.1 on."""
    return gd.ThresholdsConfig().mode(dm.ThresholdsMode.ABSOLUTE).steps(
        [dm.Threshold(value=value, color=color) for value, color in steps])


class DataLink:
    """A data link (``fieldConfig.defaults.links`` entry): a title and a URL with Grafana's
    ``${...}`` variables. The SDK types data links as dashboard links, whose extra fields a
    data link does not have."""

    def __init__(self, title: str, url: str) -> None:
        self._link = {"title": title, "url": url, "targetBlank": False}

    def build(self) -> dict[str, Any]:
        return dict(self._link)


def variables(*, cost: str | None = None) -> list[Any]:
    """The template variables: model, version and window from the window series, and
    with ``cost`` the ``unit_cost`` text box holding that default."""
    out: list[Any] = [
        gd.QueryVariable("model").label("Model").datasource(PROMETHEUS)
        .query("label_values(ampel_predictions, model)").refresh(dm.VariableRefresh.ON_TIME_RANGE_CHANGED)
        .sort(dm.VariableSort.ALPHABETICAL_ASC).multi(True).include_all(True),
        gd.QueryVariable("version").label("Version").datasource(PROMETHEUS)
        .query('label_values(ampel_predictions{model=~"$model"}, version)')
        .refresh(dm.VariableRefresh.ON_TIME_RANGE_CHANGED).sort(dm.VariableSort.ALPHABETICAL_ASC)
        .multi(True).include_all(True),
        gd.QueryVariable("window").label("Window").datasource(PROMETHEUS)
        .query("label_values(ampel_predictions, window)").refresh(dm.VariableRefresh.ON_TIME_RANGE_CHANGED)
        .sort(dm.VariableSort.ALPHABETICAL_ASC),
    ]
    if cost is not None:
        out.append(gd.TextBoxVariable("unit_cost").label("Unit cost per serving hour").default_value(cost)
                   .description("Cost of serving one model version for one hour; the cost panels divide it "
                                "by the predictions served."))
    return out


class Board:
    """A dashboard being assembled: rows and panels in order, each panel with an id
    (explicit for the ones links point at, else the next free one)."""

    def __init__(self, uid: str, title: str, description: str, tags: Iterable[str] = ()) -> None:
        self.builder = (gd.Dashboard(title).uid(uid).description(description).tags(["ampel", *tags])
                        .editable().tooltip(dm.DashboardCursorSync.CROSSHAIR).refresh("1m").time("now-6h", "now")
                        .timezone("utc"))
        self._next_id = PanelId.FIRST_FREE
        self._row_id = 100

    def row(self, title: str) -> Board:
        self._row_id += 1
        self.builder = self.builder.with_row(gd.Row(title).id(self._row_id))
        return self

    def panel(self, panel: Any, panel_id: int | None = None) -> Board:
        if panel_id is None:
            panel_id, self._next_id = self._next_id, self._next_id + 1
        self.builder = self.builder.with_panel(panel.id(panel_id))
        return self

    def build(self, variables_: Sequence[Any], links: Sequence[Any] = ()) -> dm.Dashboard:
        board = self.builder.variables(list(variables_))
        if links:
            board = board.links(list(links))
        model = board.build()
        for panel in model.panels or []:
            targets = getattr(panel, "targets", None)
            if targets and getattr(panel, "datasource", None) is None:
                panel.datasource = targets[0].datasource  # every panel queries one data source
        for variable in (model.templating.list_val or []):
            if variable.type_val != dm.VariableType.INTERVAL:
                # the SDK writes interval-only fields on every variable; Grafana's schema has them on none
                variable.auto = variable.auto_min = variable.auto_count = None
        return model


def dashboard_link(title: str, uid: str) -> gd.DashboardLink:
    """A link in the dashboard's header to another dashboard, keeping time and variables."""
    return (gd.DashboardLink(title).type(dm.DashboardLinkType.LINK).url(f"/d/{uid}/{_SLUGS[uid]}")
            .include_vars(True).keep_time(True).icon("dashboard").tooltip(title).tags([]).as_dropdown(False)
            .target_blank(False))


def to_json(model: dm.Dashboard) -> str:
    """The dashboard as the JSON Grafana imports: keys sorted, two-space indent, final newline."""
    return json.dumps(model, cls=JSONEncoder, indent=2, sort_keys=True, ensure_ascii=False) + "\n"
