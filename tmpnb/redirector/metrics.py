"""/metrics for Prometheus: the redirector's counters and, at each scrape, every node's state.

The registry is the redirector's own (not prometheus_client's global one), so tests and two
redirectors in one process never mix their numbers.
"""

from __future__ import annotations

from collections.abc import Iterator

from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter, generate_latest
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector
from twisted.web.resource import Resource
from twisted.web.server import Request

from tmpnb.redirector.nodes import Node, NodeTable, room


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
        }
        for node in self._table:
            families["up"].add_metric([node.url], float(node.up))
            families["draining"].add_metric([node.url], float(node.draining))
            families["available"].add_metric([node.url], float(node.available))
            families["room"].add_metric([node.url], float(room(node, self._headroom)))
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
