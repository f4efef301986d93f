"""What the monitoring config asks Prometheus for: PromQL expressions and the metric names in them.

A small PromQL reader, enough for the expressions we write (promtool checks their syntax
separately): it drops strings, label matchers, ranges and grouping clauses, and keeps the
identifiers that are not functions or keywords. Selectors by `{__name__=...}` are not supported
(and not used).
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[2]
MONITORING = ROOT / "monitoring"
RULES_DIR = MONITORING / "prometheus" / "rules"
DASHBOARD_DIR = MONITORING / "grafana" / "dashboards"

KEYWORDS = {"and", "or", "unless", "by", "without", "on", "ignoring", "group_left",
            "group_right", "bool", "offset", "inf", "nan", "atan2"}
HISTOGRAM_SUFFIXES = ("_bucket", "_sum", "_count")

_STRING = re.compile(r'"(?:[^"\\]|\\.)*"|\'(?:[^\'\\]|\\.)*\'|`[^`]*`')
_BRACES = re.compile(r"\{[^{}]*\}")
_BRACKETS = re.compile(r"\[[^\[\]]*\]")
_GROUPING = re.compile(r"\b(by|without|on|ignoring|group_left|group_right)\s*\([^()]*\)")
_OFFSET = re.compile(r"\boffset\s+-?[0-9a-z]+")
_IDENT = re.compile(r"(?<![\w:.])([A-Za-z_:][A-Za-z0-9_:]*)(\s*\()?")
_LABEL_VALUES = re.compile(r"^\s*label_values\(\s*(.*?)\s*,\s*[A-Za-z_][A-Za-z0-9_]*\s*\)\s*$")
_GRAFANA_RANGES = re.compile(r"\$__(rate_interval|interval|range)\b|\$\{__(rate_interval|interval|range)\}")
_GRAFANA_VARIABLE = re.compile(r"\$\{?\w+\}?")


def metric_names(expr: str) -> set[str]:
    """The metric names a PromQL expression selects."""
    text = _STRING.sub('""', expr)
    text = _BRACES.sub("", text)
    text = _BRACKETS.sub("", text)
    text = _GROUPING.sub("", text)
    text = _OFFSET.sub("", text)
    names = set()
    for match in _IDENT.finditer(text):
        name, call = match.groups()
        if call or name.lower() in KEYWORDS:
            continue
        names.add(name)
    return names


def grafana_to_promql(expr: str) -> str:
    """A Grafana query as plain PromQL: its interval macros become 5m, variables `.*`."""
    expr = _GRAFANA_RANGES.sub("5m", expr)
    return _GRAFANA_VARIABLE.sub(".*", expr)


def base_name(name: str) -> str:
    """A histogram's family name from one of its series' names (others unchanged)."""
    for suffix in HISTOGRAM_SUFFIXES:
        if name.endswith(suffix):
            return name[: -len(suffix)]
    return name


# -- where expressions live ----------------------------------------------------------------
def rule_expressions() -> dict[str, str]:
    """'rules file: alert name' -> expression, for every rule."""
    found = {}
    for path in sorted(RULES_DIR.glob("*.yml")):
        for group in yaml.safe_load(path.read_text())["groups"]:
            for rule in group["rules"]:
                found[f"{path.name}: {rule.get('alert') or rule.get('record')}"] = rule["expr"]
    return found


def dashboards() -> dict[str, dict]:
    return {path.name: json.loads(path.read_text(encoding="utf-8"))
            for path in sorted(DASHBOARD_DIR.glob("*.json"))}


def all_panels(panels: list[dict]):
    """Every panel, with the panels nested in collapsed rows."""
    for panel in panels:
        yield panel
        yield from all_panels(panel.get("panels", []))


def dashboard_expressions() -> dict[str, str]:
    """'dashboard: panel title [refId]' -> PromQL (Grafana macros replaced), panels and variables."""
    found = {}
    for file_name, board in dashboards().items():
        for panel in all_panels(board["panels"]):
            for target in panel.get("targets", []):
                found[f"{file_name}: {panel['title']} [{target['refId']}]"] = \
                    grafana_to_promql(target["expr"])
        for variable in board.get("templating", {}).get("list", []):
            if variable.get("type") != "query":
                continue
            query = variable["query"]
            query = query["query"] if isinstance(query, dict) else query
            match = _LABEL_VALUES.match(query)
            found[f"{file_name}: variable {variable['name']}"] = \
                grafana_to_promql(match.group(1) if match else query)
    return found


def used_metric_names() -> dict[str, set[str]]:
    """Metric name -> where it is used (alert rules and dashboards)."""
    used: dict[str, set[str]] = {}
    for where, expr in {**rule_expressions(), **dashboard_expressions()}.items():
        for name in metric_names(expr):
            used.setdefault(name, set()).add(where)
    return used


# -- what sources export -------------------------------------------------------------------
def exposition_names(text: str) -> set[str]:
    """Sample and family names in Prometheus text exposition format."""
    names = set()
    for line in text.splitlines():
        if line.startswith("# TYPE ") or line.startswith("# HELP "):
            names.add(line.split()[2])
        elif line and not line.startswith("#"):
            names.add(re.split(r"[{\s]", line, maxsplit=1)[0])
    return names


def exporter_metric_names(path: Path = MONITORING / "exporter-metrics.txt") -> dict[str, set[str]]:
    """Section (scrape job) -> metric names, from monitoring/exporter-metrics.txt."""
    sections: dict[str, set[str]] = {}
    current = None
    for raw in path.read_text(encoding="utf-8").splitlines():
        line = raw.split("#", 1)[0].strip()
        if not line:
            continue
        if line.startswith("[") and line.endswith("]"):
            current = sections.setdefault(line[1:-1], set())
        elif current is None:
            raise ValueError(f"{path.name}: metric name before any [section]: {line}")
        else:
            current.add(line)
    return sections


def is_exported(name: str, exported: set[str]) -> bool:
    return name in exported or base_name(name) in exported
