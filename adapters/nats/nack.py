"""NACK (nats-io/nack), the JetStream controller for Kubernetes: streams.yaml's streams and
durable consumers as its ``jetstream.nats.io/v1beta2`` ``Stream`` and ``Consumer`` resources
(``moltbot streams export --format nack``; CRDs in nack's deploy/crds.yml).

Pure: a JetStream config in, Kubernetes resources out. A field with no NACK counterpart is
refused by name (:class:`NackError`) rather than dropped."""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from typing import Any

import yaml

from adapters.nats.event_store import EVENTS_STREAM
from adapters.nats.streams import StreamsFile


class NackError(ValueError):
    """streams.yaml holds something NACK cannot say, or a name Kubernetes refuses."""


# Each table maps a JetStream config field, named as streams.yaml writes it, to its field in
# NACK's jetstream.nats.io/v1beta2 spec and how the value is written there. A field with no entry
# is refused, by name: exporting without it would leave the cluster configured otherwise.

NACK_API = "jetstream.nats.io/v1beta2"
NACK_LABELS = {"app.kubernetes.io/part-of": "moltbot-cloud"}
JETSTREAM_ACK_WAIT = 30 * 10**9  # the server's default; NACK's CRD would default ackWait to 1ns
Convert = Callable[[Any, str], Any]


def go_duration(nanoseconds: int) -> str:
    """Nanoseconds as Go's ``time.Duration`` prints them ("168h0m0s", "2m0s", "1.5s", "500ms"),
    the form NACK parses with ``time.ParseDuration``."""
    if nanoseconds < 1_000:
        return f"{nanoseconds}ns" if nanoseconds else "0s"
    if nanoseconds < 1_000_000:
        return f"{_decimal(nanoseconds, 3)}µs"
    if nanoseconds < 1_000_000_000:
        return f"{_decimal(nanoseconds, 6)}ms"
    minutes, rest = divmod(nanoseconds, 60 * 10**9)
    hours, minutes = divmod(minutes, 60)
    seconds = f"{_decimal(rest, 9)}s"
    if hours:
        return f"{hours}h{minutes}m{seconds}"
    return f"{minutes}m{seconds}" if minutes else seconds


def _decimal(value: int, digits: int) -> str:
    """``value`` / 10**digits without trailing zeros: 1_500_000 with 6 digits is "1.5"."""
    whole, fraction = divmod(value, 10**digits)
    return f"{whole}.{fraction:0{digits}d}".rstrip("0").rstrip(".")


def _same(value: Any, where: str) -> Any:
    return value


def _duration(value: Any, where: str) -> str:
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise NackError(f"streams.yaml: {where} must be a whole number of nanoseconds, not {value!r}")
    return go_duration(value)


def _durations(value: Any, where: str) -> list[str]:
    return [_duration(step, f"{where}[{n}]") for n, step in enumerate(value)]


def _one_of(choices: Mapping[str, str]) -> Convert:
    """A closed set of values, each written as ``choices`` says."""

    def convert(value: Any, where: str) -> str:
        if value not in choices:
            raise NackError(f"streams.yaml: {where} is {value!r}; NACK takes one of {', '.join(choices)}")
        return choices[value]

    return convert


def _same_names(*names: str) -> Convert:
    return _one_of({name: name for name in names})


def _each(fields: Mapping[str, tuple[str, Convert]]) -> Convert:
    """A list of objects, each mapped field by field."""

    def convert(value: Any, where: str) -> list[dict[str, Any]]:
        return [_mapped(item, fields, f"{where}[{n}]") for n, item in enumerate(value)]

    return convert


_TRANSFORM_FIELDS: dict[str, tuple[str, Convert]] = {"src": ("source", _same), "dest": ("dest", _same)}
_SOURCE_FIELDS: dict[str, tuple[str, Convert]] = {
    "name": ("name", _same),
    "filter_subject": ("filterSubject", _same),
    "opt_start_seq": ("optStartSeq", _same),
    "opt_start_time": ("optStartTime", _same),
    "subject_transforms": ("subjectTransforms", _each(_TRANSFORM_FIELDS)),
}
STREAM_FIELDS: dict[str, tuple[str, Convert]] = {
    "name": ("name", _same),
    "description": ("description", _same),
    "subjects": ("subjects", _same),
    "retention": ("retention", _same_names("limits", "interest", "workqueue")),
    "storage": ("storage", _same_names("file", "memory")),
    "discard": ("discard", _same_names("old", "new")),
    "discard_new_per_subject": ("discardPerSubject", _same),
    "max_consumers": ("maxConsumers", _same),
    "max_msgs": ("maxMsgs", _same),
    "max_bytes": ("maxBytes", _same),
    "max_age": ("maxAge", _duration),
    "max_msgs_per_subject": ("maxMsgsPerSubject", _same),
    "max_msg_size": ("maxMsgSize", _same),
    "num_replicas": ("replicas", _same),
    "no_ack": ("noAck", _same),
    "duplicate_window": ("duplicateWindow", _duration),
    "sources": ("sources", _each(_SOURCE_FIELDS)),
    "deny_delete": ("denyDelete", _same),
    "deny_purge": ("denyPurge", _same),
    "allow_rollup_hdrs": ("allowRollup", _same),
    "allow_direct": ("allowDirect", _same),
    "mirror_direct": ("mirrorDirect", _same),
    "allow_msg_ttl": ("allowMsgTtl", _same),
    "allow_atomic": ("allowAtomicPublish", _same),
}
CONSUMER_FIELDS: dict[str, tuple[str, Convert]] = {
    "durable_name": ("durableName", _same),
    "description": ("description", _same),
    "deliver_policy": (
        "deliverPolicy",
        _one_of(
            {
                "all": "all",
                "last": "last",
                "new": "new",
                "by_start_sequence": "byStartSequence",
                "by_start_time": "byStartTime",
                "last_per_subject": "lastPerSubject",
            }
        ),
    ),
    "opt_start_seq": ("optStartSeq", _same),
    "opt_start_time": ("optStartTime", _same),
    "ack_policy": ("ackPolicy", _same_names("none", "all", "explicit")),
    "ack_wait": ("ackWait", _duration),
    "max_deliver": ("maxDeliver", _same),
    "backoff": ("backoff", _durations),
    "filter_subject": ("filterSubject", _same),
    "filter_subjects": ("filterSubjects", _same),
    "replay_policy": ("replayPolicy", _same_names("instant", "original")),
    "max_waiting": ("maxWaiting", _same),
    "max_ack_pending": ("maxAckPending", _same),
    "headers_only": ("headersOnly", _same),
    "max_batch": ("maxRequestBatch", _same),
    "max_expires": ("maxRequestExpires", _duration),
    "max_bytes": ("maxRequestMaxBytes", _same),
    "inactive_threshold": ("inactiveThreshold", _duration),
    "num_replicas": ("replicas", _same),
    "mem_storage": ("memStorage", _same),
}
_K8S_NAME = re.compile(r"[a-z0-9]([-a-z0-9]*[a-z0-9])?")
NACK_ACCOUNT = re.compile(r"[^.*>]+")


def _mapped(
    config: Mapping[str, Any], fields: Mapping[str, tuple[str, Convert]], where: str
) -> dict[str, Any]:
    for key in config:
        if key not in fields:
            raise NackError(
                f"streams.yaml: {where}.{key} has no NACK field; map it in moltbot/cli/streams.py"
                " (NACK's CRDs: nats-io/nack deploy/crds.yml) or leave it out of streams.yaml"
            )
    return {fields[key][0]: fields[key][1](value, f"{where}.{key}") for key, value in config.items()}


def _resource(kind: str, name: str, spec: dict[str, Any], account: str | None) -> dict[str, Any]:
    # preventDelete: deleting the resource (say `kubectl delete -k`) must never delete the log.
    spec = spec | {"preventDelete": True} | ({"account": account} if account else {})
    return {
        "apiVersion": NACK_API,
        "kind": kind,
        "metadata": {"name": name, "labels": dict(NACK_LABELS)},
        "spec": spec,
    }


def _resource_name(*parts: str) -> str:
    name = "-".join(parts).lower().replace("_", "-")
    if len(name) > 63 or not _K8S_NAME.fullmatch(name):
        raise NackError(f"{'/'.join(parts)} makes no Kubernetes resource name ({name!r})")
    return name


def nack_resources(
    spec: StreamsFile,
    *,
    replicas: int | None = None,
    account: str | None = None,
    feed: Mapping[str, Any] | None = None,
) -> list[dict[str, Any]]:
    """A NACK ``Stream`` per stream of ``spec`` (and ``feed``, the partitioned projections' stream,
    replicated like EVENTS as its first worker would make it), then a ``Consumer`` per durable
    consumer. ``replicas`` overrides num_replicas everywhere, as ``streams apply --replicas`` does."""
    streams = [dict(stream) | ({"num_replicas": replicas} if replicas else {}) for stream in spec.streams]
    if feed is not None:
        events = next((s for s in streams if s["name"] == EVENTS_STREAM), {})
        streams.append(dict(feed) | {"num_replicas": events.get("num_replicas", 1)})
    resources = []
    for config in streams:
        where = f"streams[{config['name']}]"
        mapped = _mapped(config, STREAM_FIELDS, where)
        mapped.setdefault("storage", "file")  # JetStream's default; the CRD's is memory
        resources.append(_resource("Stream", _resource_name(config["name"]), mapped, account))
    for consumer in spec.consumers:
        config = dict(consumer.config) | ({"num_replicas": replicas} if replicas else {})
        where = f"consumers[{consumer.stream}/{consumer.name}]"
        mapped = {"streamName": consumer.stream} | _mapped(config, CONSUMER_FIELDS, where)
        if "ackWait" not in mapped:  # with a backoff the server takes its first step as the ack wait
            mapped["ackWait"] = go_duration(config.get("backoff", [JETSTREAM_ACK_WAIT])[0])
        resources.append(
            _resource("Consumer", _resource_name(consumer.stream, consumer.name), mapped, account)
        )
    names = [r["metadata"]["name"] for r in resources]
    if len(set(names)) != len(names):
        raise NackError(f"two resources would share a name: {sorted(n for n in names if names.count(n) > 1)}")
    return resources


def render_nack(resources: list[dict[str, Any]], command: str) -> str:
    header = (
        f"# Generated by `{command}` from streams.yaml.\n"
        "# Do not edit: change streams.yaml and run `make k8s`. Every stream and durable consumer as a\n"
        "# NACK resource; deleting one leaves it on the servers (preventDelete). Projection consumers\n"
        "# (proj-*) are not here: their workers make them at their checkpoints.\n"
    )
    documents = yaml.safe_dump_all(
        resources, explicit_start=True, sort_keys=False, allow_unicode=True, width=1000
    )
    return header + documents
