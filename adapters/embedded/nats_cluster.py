"""Supervise a 3-node ``nats-server`` JetStream cluster on loopback (tests, ``moltbot up --cluster 3``)."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Mapping, Sequence
from pathlib import Path

import structlog

from adapters.embedded.nats_server import NatsServer, jetstream_answers
from adapters.embedded.processes import EmbeddedServerError, Supervisor, free_port
from adapters.embedded.secrets import new_password
from adapters.nats.permissions import ADMIN

log = structlog.get_logger()

CLUSTER_SIZE = 3


class NatsCluster(Supervisor):
    """Three ``nats-server`` nodes routed into one JetStream cluster, each in ``base_dir/nats-<n>``.

    Nodes are numbered from 0 in ``urls``, ``nodes``, ``kill_node(i)`` and ``start_node(i)``;
    their server names are ``<name>-1`` .. ``<name>-3``. With ``users`` clients sign in as on a single
    server (:class:`NatsServer`), and the nodes' routes authenticate with a password made
    for this cluster object (it is rewritten into every node's config at each start). Usage::

        async with NatsCluster(tmp_path) as cluster:
            nc = await adapters.nats.connection.connect(cluster.url)
    """

    def __init__(
        self,
        base_dir: Path,
        *,
        name: str = "moltbot",
        host: str = "127.0.0.1",
        ports: Sequence[int] | None = None,
        route_ports: Sequence[int] | None = None,
        startup_timeout: float = 30.0,
        users: Mapping[str, str] | None = None,
    ) -> None:
        self.base_dir = Path(base_dir).resolve()
        self.users = dict(users) if users is not None else None
        self._route_password = new_password() if users is not None else None
        self.name = name
        self.host = host
        self.ports = list(ports) if ports is not None else [free_port(host) for _ in range(CLUSTER_SIZE)]
        self.route_ports = (
            list(route_ports) if route_ports is not None else [free_port(host) for _ in range(CLUSTER_SIZE)]
        )
        if len(self.ports) != CLUSTER_SIZE or len(self.route_ports) != CLUSTER_SIZE:
            raise ValueError(f"a cluster has {CLUSTER_SIZE} nodes: give {CLUSTER_SIZE} ports and route ports")
        self.startup_timeout = startup_timeout
        self.nodes = [
            NatsServer(
                self.base_dir / f"nats-{n + 1}",
                host=host,
                port=self.ports[n],
                server_name=f"{name}-{n + 1}",
                extra_config=self._cluster_block(n),
                startup_timeout=startup_timeout,
                users=users,
            )
            for n in range(CLUSTER_SIZE)
        ]

    def _cluster_block(self, index: int) -> str:
        password = self._route_password
        userinfo = f"route:{password}@" if password is not None else ""
        routes = "\n".join(
            f"    {json.dumps(f'nats-route://{userinfo}{self.host}:{port}')}"
            for n, port in enumerate(self.route_ports)
            if n != index
        )
        listen = json.dumps(f"{self.host}:{self.route_ports[index]}")
        authorization = (
            f"  authorization {{ user: route, password: {json.dumps(password)} }}\n"
            if password is not None
            else ""
        )
        return (
            f"cluster {{\n  name: {json.dumps(self.name)}\n  listen: {listen}\n{authorization}"
            f"  routes: [\n{routes}\n  ]\n}}\n"
        )

    @property
    def urls(self) -> list[str]:
        return [node.url for node in self.nodes]

    @property
    def url(self) -> str:
        """Every node's URL, comma-separated (``adapters.nats.connection.connect`` accepts it)."""
        return ",".join(self.urls)

    def login_url(self, role: str = ADMIN) -> str:
        """Every node's URL with ``role``'s user and password in it, comma-separated."""
        return ",".join(node.login_url(role) for node in self.nodes)

    def index_of(self, server_name: str) -> int:
        """The node index of a server name as JetStream reports it (e.g. a stream's ``cluster.leader``)."""
        for index, node in enumerate(self.nodes):
            if node.server_name == server_name:
                return index
        raise KeyError(server_name)

    async def start(self) -> None:
        """Start the three processes together (none is ready alone: JetStream needs a quorum)."""
        started = time.monotonic()
        try:
            async with asyncio.TaskGroup() as group:
                for node in self.nodes:
                    group.create_task(node.start())
            await self._wait_meta_leader()
        except BaseException:
            await self.stop()
            raise
        log.info("nats_cluster_started", url=self.url, seconds=round(time.monotonic() - started, 2))

    async def _wait_meta_leader(self) -> None:
        deadline = time.monotonic() + self.startup_timeout
        while not await jetstream_answers(self.urls, self.users, api_timeout=2):
            if time.monotonic() >= deadline:
                raise EmbeddedServerError(
                    f"nats cluster {self.name}: no JetStream meta leader after {self.startup_timeout}s"
                )
            await asyncio.sleep(0.1)

    async def kill_node(self, index: int) -> None:
        """SIGKILL one node (crash simulation); the other two keep a quorum."""
        await self.nodes[index].kill()

    async def start_node(self, index: int) -> None:
        """Start one node again on its port and store; it rejoins the cluster and catches up."""
        await self.nodes[index].start()

    async def stop(self) -> None:
        await asyncio.gather(*(node.stop() for node in self.nodes))
