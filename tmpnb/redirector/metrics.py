"""/metrics for Prometheus: the redirector's counters and, at each scrape, every node's state.

The registry is the redirector's own (not prometheus_client's global one), so tests and two
redirectors in one process never mix their numbers.

Flavor labels name only flavors some node reported (a visitor's made-up name is never one),
and at most MAX_FLAVOR_LABELS of them over the process's life: a node that reports new names
at every poll must not grow the counters without bound (the rest count as "_other", which no
flavor can be named).
"""

from __future__ import annotations

from collections.abc import Iterator

from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter, generate_latest
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector
from twisted.web.resource import Resource
from twisted.web.server import Request

from tmpnb.redirector.nodes import Node, NodeTable, flavor_room, room

MAX_FLAVOR_LABELS = 256
OTHER_FLAVORS = "_other"


class NodesCollector(Collector):
    def __init__(self, table: NodeTable, headroom: int) -> None:
        self._table = table
        self._headroom = headroom

    def collect(self) -> Iterator[GaugeMetricFamily]:
        families = {
            "up": GaugeMetricFamily("tmpnb_redirector_node_up", "1 if the node answers its polls", labels=["node"]),
            "draining": GaugeMetricFamily("tmpnb_redirector_node_draining", "1 if the node is draining", labels=["node"]),
            "available": GaugeMetricFamily("tmpnb_redirector_node_available", "Pooled containers the node reported", labels=["node"]),
            "room": GaugeMetricFamily("tmpnb_redirector_node_room", "Visitors the redirector may still send the node", labels=["node"]),
            "flavor_room": GaugeMetricFamily("tmpnb_redirector_node_flavor_room",
                                             "Visitors of a flavor the redirector may still send the node",
                                             labels=["node", "flavor"]),
            "flavor_available": GaugeMetricFamily("tmpnb_redirector_node_flavor_available",
                                                  "Pooled containers of a flavor the node reported",
                                                  labels=["node", "flavor"]),
        }
        for node in self._table:
            families["up"].add_metric([node.url], float(node.up))
            families["draining"].add_metric([node.url], float(node.draining))
            families["available"].add_metric([node.url], float(node.available))
            families["room"].add_metric([node.url], float(room(node, self._headroom)))
            for name, report in (node.flavors or {}).items():  # what it reports now: bounded per node
                families["flavor_room"].add_metric([node.url, name], float(flavor_room(node, name, self._headroom)))
                families["flavor_available"].add_metric([node.url, name], float(report.available))
        yield from families.values()


class Metrics:
    def __init__(self, table: NodeTable, headroom: int) -> None:
        self.registry = CollectorRegistry()
        self.registry.register(NodesCollector(table, headroom))
        self.sent = Counter("tmpnb_redirector_visitors", "Visitors sent to a node (redirect or API spawn)",
                            ["node", "how"], registry=self.registry)
        self.full = Counter("tmpnb_redirector_no_vacancy", "Visitors turned away: no node had room",
                            ["how"], registry=self.registry)
        self.polls = Counter("tmpnb_redirector_polls", "Health polls by outcome", ["node", "outcome"],
                             registry=self.registry)
        self.flavor_sent = Counter("tmpnb_redirector_flavor_visitors",
                                   "Visitors who asked for a flavor, sent to a node that serves it",
                                   ["node", "flavor", "how"], registry=self.registry)
        self.flavor_full = Counter("tmpnb_redirector_flavor_no_vacancy",
                                   "Visitors who asked for a flavor turned away: no node serving it had room",
                                   ["flavor", "how"], registry=self.registry)
        self.unknown_flavor = Counter("tmpnb_redirector_unknown_flavor",
                                      "Visitors who asked for a flavor no node serves (or no flavor name): 404",
                                      ["how"], registry=self.registry)
        self._flavor_labels: set[str] = set()

    def flavor_label(self, flavor: str) -> str:
        """`flavor` as a label value (a name some node reported), within the bound."""
        if flavor in self._flavor_labels:
            return flavor
        if len(self._flavor_labels) >= MAX_FLAVOR_LABELS:
            return OTHER_FLAVORS
        self._flavor_labels.add(flavor)
        return flavor

    def poll(self, node: Node, outcome: str) -> None:
        self.polls.labels(node.url, outcome).inc()


class MetricsPage(Resource):
    isLeaf = True

    def __init__(self, metrics: Metrics) -> None:
        super().__init__()
        self._metrics = metrics

    def render_GET(self, request: Request) -> bytes:
        request.setHeader(b"Content-Type", CONTENT_TYPE_LATEST.encode("ascii"))
        return generate_latest(self._metrics.registry)
