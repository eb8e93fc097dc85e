"""Applying streams.yaml to JetStream: create what is missing, update what JetStream can
change in place, and report drift it cannot fix (never delete or recreate a stream).

The file holds the server's own StreamConfig JSON, so requests go to the JetStream API
as-is (``$JS.API.STREAM.*``), with no unit conversion in between.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

import msgspec
import yaml
from nats.aio.client import Client

from adapters.nats.errors import StreamConfigError
from adapters.nats.jetstream import JetStreamApi

_START_POSITION = ("deliver_policy", "opt_start_seq", "opt_start_time")

Action = Literal["created", "unchanged", "updated", "drift"]


class ConsumerSpec(msgspec.Struct, frozen=True):
    stream: str
    config: dict[str, Any]

    @property
    def name(self) -> str:
        return str(self.config["durable_name"])


class StreamsFile(msgspec.Struct, frozen=True):
    streams: list[dict[str, Any]]
    consumers: list[ConsumerSpec] = []
    consumer_templates: dict[str, dict[str, Any]] = {}

    def consumer(self, name: str) -> ConsumerSpec:
        for spec in self.consumers:
            if spec.name == name:
                return spec
        raise StreamConfigError(f"streams.yaml has no consumer {name!r}")


class StreamReport(msgspec.Struct, frozen=True):
    name: str
    action: Action
    changes: list[str] = []
    error: str | None = None

    def line(self) -> str:
        text = f"{self.name}: {self.action}"
        if self.changes:
            text += " (" + "; ".join(self.changes) + ")"
        if self.error:
            text += f" — {self.error}"
        return text


def load_streams_file(path: Path) -> StreamsFile:
    try:
        raw = yaml.safe_load(path.read_text())
        spec = msgspec.convert(raw, StreamsFile)
    except (OSError, yaml.YAMLError, msgspec.ValidationError) as exc:
        raise StreamConfigError(f"{path}: {exc}") from None
    for stream in spec.streams:
        if not isinstance(stream.get("name"), str):
            raise StreamConfigError(f"{path}: every stream needs a name")
    for consumer in spec.consumers:
        if not isinstance(consumer.config.get("durable_name"), str):
            raise StreamConfigError(f"{path}: every consumer needs a durable_name")
    return spec


async def _api(nc: Client, subject: str, body: dict[str, Any] | None = None) -> dict[str, Any]:
    return await JetStreamApi(nc).request(subject, body)


def _differences(desired: dict[str, Any], actual: dict[str, Any]) -> list[str]:
    changes = []
    for key, want in desired.items():
        have = actual.get(key)
        if have != want and not (want in (None, False, [], {}) and have in (None, False, [], {})):
            changes.append(f"{key}: {have!r} -> {want!r}")
    return changes


async def apply_streams(nc: Client, spec: StreamsFile, *, replicas: int | None = None) -> list[StreamReport]:
    """Make the server's streams match ``spec``; idempotent. ``replicas`` overrides num_replicas."""
    reports = []
    for stream in spec.streams:
        desired = dict(stream)
        if replicas is not None:
            desired["num_replicas"] = replicas
        name = desired["name"]
        info = await _api(nc, f"STREAM.INFO.{name}")
        if "error" in info:
            if info["error"].get("err_code") != 10059:  # stream not found
                reports.append(StreamReport(name, "drift", error=info["error"].get("description")))
                continue
            created = await _api(nc, f"STREAM.CREATE.{name}", desired)
            if "error" in created:
                raise StreamConfigError(f"{name}: {created['error'].get('description')}")
            reports.append(StreamReport(name, "created"))
            continue
        actual = info["config"]
        changes = _differences(desired, actual)
        if not changes:
            reports.append(StreamReport(name, "unchanged"))
            continue
        updated = await _api(nc, f"STREAM.UPDATE.{name}", actual | desired)
        if "error" in updated:
            reports.append(
                StreamReport(name, "drift", changes, error=str(updated["error"].get("description")))
            )
        else:
            reports.append(StreamReport(name, "updated", changes))
    for consumer in spec.consumers:
        reports.append(await _apply_consumer(nc, consumer, replicas))
    return reports


async def _apply_consumer(nc: Client, spec: ConsumerSpec, replicas: int | None) -> StreamReport:
    """Create a durable consumer, or update it in place; drift is reported, never forced."""
    label = f"{spec.stream}/{spec.name}"
    desired = dict(spec.config)
    if replicas is not None:
        desired["num_replicas"] = replicas
    subject = f"CONSUMER.CREATE.{spec.stream}.{spec.name}"
    info = await _api(nc, f"CONSUMER.INFO.{spec.stream}.{spec.name}")
    if "error" in info:
        if info["error"].get("err_code") != 10014:  # consumer not found
            return StreamReport(label, "drift", error=info["error"].get("description"))
        created = await _api(nc, subject, {"stream_name": spec.stream, "config": desired, "action": "create"})
        if "error" in created:
            raise StreamConfigError(f"{label}: {created['error'].get('description')}")
        return StreamReport(label, "created")
    actual = info["config"]
    # Where a consumer starts matters only when it is made: one made again where it stood
    # (`moltbot events seal`) starts by sequence, and that is no drift.
    desired = {k: v for k, v in desired.items() if k not in _START_POSITION}
    changes = _differences(desired, actual)
    if not changes:
        return StreamReport(label, "unchanged")
    body = {"stream_name": spec.stream, "config": actual | desired, "action": "update"}
    updated = await _api(nc, subject, body)
    if "error" in updated:
        return StreamReport(label, "drift", changes, error=str(updated["error"].get("description")))
    return StreamReport(label, "updated", changes)


async def stream_states(nc: Client, names: list[str]) -> list[dict[str, Any]]:
    """``STREAM.INFO`` of each stream (config and state), or its error."""
    return [await _api(nc, f"STREAM.INFO.{name}") for name in names]
