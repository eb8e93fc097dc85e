"""What ships the product (infra/): the image, Compose, Kubernetes and the NACK export of
streams.yaml — checked without a container engine, a cluster or a network. The manifests
parse; every role of the CLI runs somewhere, with probes, limits and a locked-down security
context; generated files are what their generators make today; the NACK resources say what
streams.yaml says, field for field, under NACK's own field names."""

from __future__ import annotations

import argparse
import importlib.util
import json
import re
import shlex
import stat
import subprocess
import sys
import tomllib
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest
import yaml

from adapters.embedded.nats_server import find_nats_server_binary
from adapters.nats import permissions
from adapters.nats.nack import CONSUMER_FIELDS, STREAM_FIELDS, NackError, go_duration, nack_resources
from adapters.nats.streams import ConsumerSpec, StreamsFile, load_streams_file
from moltbot.cli import build_parser, main
from moltbot.cli import run as run_commands
from moltbot.roles import CONNECTOR_KINDS
from projections.partitions import load_partitioning

ROOT = Path(__file__).resolve().parents[2]
INFRA = ROOT / "infra"
K8S = INFRA / "k8s"
VERSION = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["version"]


def _names(*lines: str) -> frozenset[str]:
    return frozenset(" ".join(lines).split())


# The spec fields of NACK's jetstream.nats.io/v1beta2 CRDs (nats-io/nack, deploy/crds.yml).
NACK_STREAM_SPEC = _names(
    "name description subjects retention maxConsumers maxMsgs maxBytes discard discardPerSubject maxAge",
    "maxMsgsPerSubject maxMsgSize storage replicas noAck duplicateWindow placement mirror sources sealed",
    "denyDelete denyPurge allowRollup compression firstSequence subjectTransform republish allowDirect",
    "mirrorDirect allowMsgTtl subjectDeleteMarkerTtl allowMsgCounter allowAtomicPublish allowMsgSchedules",
    "persistMode consumerLimits metadata account creds nkey preventDelete preventUpdate servers tls",
    "tlsFirst jsDomain",
)
NACK_CONSUMER_SPEC = _names(
    "durableName streamName deliverPolicy optStartSeq optStartTime deliverSubject ackPolicy ackWait",
    "maxDeliver backoff filterSubject filterSubjects replayPolicy sampleFreq maxWaiting rateLimitBps",
    "maxAckPending deliverGroup description flowControl headersOnly heartbeatInterval maxRequestBatch",
    "maxRequestExpires maxRequestMaxBytes inactiveThreshold pauseUntil priorityPolicy pinnedTtl",
    "priorityGroups replicas memStorage metadata account creds nkey preventDelete preventUpdate servers",
    "tls tlsFirst jsDomain",
)
NACK_SOURCE = _names(
    "name optStartSeq optStartTime filterSubject externalApiPrefix externalDeliverPrefix subjectTransforms"
)
DNS_LABEL = re.compile(r"[a-z0-9]([-a-z0-9]*[a-z0-9])?")
SECRET_WORDS = re.compile(r"PASSWORD|SECRET|TOKEN|_KEYS?$|PRIVATE|DATABASE_URL|SMTP_URL")


def _load(path: Path) -> ModuleType:
    """A script of infra/ as a module (they are not in a package)."""
    name = f"infra_{path.stem}"
    spec = importlib.util.spec_from_file_location(name, path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module


render = _load(K8S / "render.py")
probe = _load(INFRA / "probe.py")
runtime_lock = _load(INFRA / "runtime_lock.py")


def _documents(path: Path) -> list[dict[str, Any]]:
    return [doc for doc in yaml.safe_load_all(path.read_text()) if doc is not None]


def _k8s_objects() -> list[dict[str, Any]]:
    kustomization = yaml.safe_load((K8S / "kustomization.yaml").read_text())
    return [doc for name in kustomization["resources"] for doc in _documents(K8S / name)]


def _deployments() -> list[dict[str, Any]]:
    return [doc for doc in _k8s_objects() if doc["kind"] == "Deployment"]


def _role_deployments() -> list[dict[str, Any]]:
    """The Deployments that run a `moltbot` command (all but the operators' admin shell)."""
    return [d for d in _deployments() if "command" not in _container(d)]


def _container(deployment: dict[str, Any]) -> dict[str, Any]:
    containers = deployment["spec"]["template"]["spec"]["containers"]
    assert len(containers) == 1
    return dict(containers[0])


def _pod_labels(deployment: dict[str, Any]) -> dict[str, str]:
    return dict(deployment["spec"]["template"]["metadata"]["labels"])


def _compose() -> dict[str, Any]:
    return dict(yaml.safe_load((INFRA / "compose.yaml").read_text()))


def _role_services() -> dict[str, dict[str, Any]]:
    """The Compose services that run the product's image."""
    return {name: svc for name, svc in _compose()["services"].items() if "build" in svc}


def _commands(parser: argparse.ArgumentParser) -> dict[str, argparse.ArgumentParser]:
    """The subcommands of ``parser``, by name."""
    (group,) = [a for a in parser._actions if isinstance(a, argparse._SubParsersAction)]
    return dict(group.choices)


def _cli_roles() -> set[str]:
    """The long-running roles `moltbot --help` lists: the commands of moltbot/cli/run.py but
    `up` (which runs them all), and `projections run`."""
    commands = _commands(build_parser())
    handlers = {name: sub.get_default("handler") for name, sub in commands.items()}
    roles = {
        name
        for name, handler in handlers.items()
        if getattr(handler, "__module__", "") == run_commands.__name__
    }
    assert "run" in _commands(commands["projections"])
    return roles - {"up"} | {"projections"}


def _parses(args: list[str]) -> Any:
    """The CLI's own parser accepts ``args`` (SystemExit otherwise)."""
    return build_parser().parse_args(args)


def _nats_user(args: list[str]) -> str | None:
    """The NATS user a role's process signs in as (None: it uses no NATS)."""
    if args[0] == "connector":
        return permissions.connector_role(args[1])
    return None if args[0] == "billing" else args[0]


# --- every manifest parses ---------------------------------------------------------------


def test_every_manifest_parses_and_names_its_kind() -> None:
    files = sorted(K8S.glob("*.yaml"))
    assert {p.name for p in files} >= {
        "kustomization.yaml",
        "streams.yaml",
        "nats-values.yaml",
        "gateway.yaml",
    }
    for path in files:
        documents = _documents(path)
        assert documents, path
        if path.name not in ("kustomization.yaml", "nats-values.yaml"):
            assert all({"apiVersion", "kind", "metadata"} <= doc.keys() for doc in documents), path
    assert _compose()["services"]


def test_kustomization_includes_every_file_it_names_and_no_example() -> None:
    kustomization = yaml.safe_load((K8S / "kustomization.yaml").read_text())
    for name in kustomization["resources"]:
        assert (K8S / name).is_file(), name
        assert "example" not in name
    names = [doc["metadata"]["name"] for doc in _k8s_objects()]
    kinds_and_names = [(doc["kind"], doc["metadata"]["name"]) for doc in _k8s_objects()]
    assert len(set(kinds_and_names)) == len(kinds_and_names)
    assert all(DNS_LABEL.fullmatch(name) for name in names), [n for n in names if not DNS_LABEL.fullmatch(n)]


# --- Deployments -----------------------------------------------------------------------------


def test_every_cli_role_has_a_deployment_whose_command_the_cli_accepts() -> None:
    commands = [_container(d)["args"] for d in _role_deployments()]
    for args in commands:
        _parses(args)
    assert {args[0] for args in commands} == _cli_roles()
    assert sorted(args[1] for args in commands if args[0] == "connector") == sorted(CONNECTOR_KINDS)
    partitioned = [_parses(args) for args in commands if args[0] == "projections"]
    (partitions,) = {args.partitions for args in partitioned}  # one N for every worker
    assert sorted(args.partition for args in partitioned) == list(range(partitions))
    assert partitions == render.PROJECTION_PARTITIONS > 1


def test_every_deployment_has_probes_limits_and_a_locked_down_security_context() -> None:
    for deployment in _deployments():
        name = deployment["metadata"]["name"]
        pod = deployment["spec"]["template"]["spec"]
        container = _container(deployment)
        for kind in ("startupProbe", "readinessProbe", "livenessProbe"):
            assert {"httpGet", "exec"} & container[kind].keys(), (name, kind)
        resources = container["resources"]
        assert {"cpu", "memory"} <= resources["requests"].keys(), name
        assert _mebibytes(resources["limits"]["memory"]) >= _mebibytes(resources["requests"]["memory"]), name
        assert pod["securityContext"]["runAsNonRoot"] is True
        assert pod["securityContext"]["runAsUser"] == render.UID != 0
        assert pod["automountServiceAccountToken"] is False
        assert container["securityContext"] == {
            "allowPrivilegeEscalation": False,
            "readOnlyRootFilesystem": True,
            "capabilities": {"drop": ["ALL"]},
        }
        tmp = next(v for v in pod["volumes"] if v["name"] == "tmp")
        assert "emptyDir" in tmp
        assert {"name": "tmp", "mountPath": "/tmp"} in container["volumeMounts"]
        assert container["image"] == f"moltbot-cloud:{VERSION}"
        assert deployment["spec"]["selector"]["matchLabels"].items() <= _pod_labels(deployment).items()


def test_the_gateway_probes_healthz_and_the_others_probe_their_connection() -> None:
    for deployment in _role_deployments():
        container = _container(deployment)
        args = container["args"]
        if args[0] == "gateway":
            assert container["readinessProbe"]["httpGet"] == {"path": "/healthz", "port": "http"}
            assert {"name": "http", "containerPort": 8000} in container["ports"]
            assert args[1:] == ["--host", "0.0.0.0"]
        else:
            assert container["livenessProbe"]["exec"]["command"] == ["python", "/opt/moltbot/probe.py"]
            # What probe.py checks for this role, as PID 1 runs it.
            role, _ = probe.role_of(["/opt/moltbot/venv/bin/python", "/opt/moltbot/venv/bin/moltbot", *args])
            assert probe.check_for(role) == ("postgres" if role == "billing" else "nats"), args


def test_memory_comes_from_the_bench_figure_each_deployment_names() -> None:
    report = json.loads((ROOT / "bench" / "report.json").read_text())
    peaks = {e["role"]: e["peak_rss_mib"] for e in report["memory"]["roles"] + report["memory"]["imports"]}
    kustomization = yaml.safe_load((K8S / "kustomization.yaml").read_text())
    text = "".join((K8S / name).read_text() for name in kustomization["resources"])
    said = dict(re.findall(r"# ([a-z0-9-]+): memory from bench/report.json, '([^']+)': peak RSS", text))
    for deployment in _deployments():
        name = deployment["metadata"]["name"]
        entry = said[name]  # every Deployment says where its memory comes from
        resources = _container(deployment)["resources"]
        assert _mebibytes(resources["requests"]["memory"]) >= peaks[entry], name
        assert _mebibytes(resources["limits"]["memory"]) >= 2 * peaks[entry], name
    assert (
        said["gateway"] == "gateway" and said["projections-0"] == "projections" and said["agent"] == "agent"
    )


def _mebibytes(quantity: str) -> float:
    number, unit = re.fullmatch(r"(\d+)(Mi|Gi)", quantity).groups()  # type: ignore[union-attr]
    return float(number) * (1024 if unit == "Gi" else 1)


def test_secrets_come_by_reference_and_each_role_signs_in_as_its_own_nats_user() -> None:
    kustomization = yaml.safe_load((K8S / "kustomization.yaml").read_text())
    generated = {g["name"] for g in kustomization["secretGenerator"]}
    for deployment in _deployments():
        container = _container(deployment)
        for variable in container.get("env", []):
            assert "value" not in variable or not SECRET_WORDS.search(variable["name"]), variable
        secrets = [ref["secretRef"]["name"] for ref in container["envFrom"] if "secretRef" in ref]
        assert set(secrets) <= generated
        user = _nats_user(container["args"]) if "args" in container else permissions.ADMIN
        nats = [s for s in secrets if s.startswith("moltbot-nats-")]
        assert nats == ([render.nats_secret(user)] if user else [])
    for user in permissions.roles(CONNECTOR_KINDS):
        (generator,) = [g for g in kustomization["secretGenerator"] if g["name"] == render.nats_secret(user)]
        assert generator["envs"] == [f"secrets/nats/env/{user}.env"]


def test_committed_secret_files_are_examples_only() -> None:
    ignored = (K8S / "secrets" / ".gitignore").read_text().splitlines()
    assert "*" in ignored and "!*.example" in ignored
    kustomization = yaml.safe_load((K8S / "kustomization.yaml").read_text())
    sources = [
        s.split("=")[-1]
        for g in kustomization["secretGenerator"]
        for s in g.get("envs", []) + g.get("files", [])
    ]
    assert all(s.startswith("secrets/") for s in sources)
    for name in ("core.env", "app.env", "jwt-ed25519.pem"):  # each file a generator reads has its example
        assert f"secrets/{name}" in sources
        assert "EXAMPLE" in (K8S / "secrets" / f"{name}.example").read_text()


def test_the_admin_shell_is_off_until_an_operator_needs_it() -> None:
    (shell,) = [d for d in _deployments() if d not in _role_deployments()]
    assert shell["metadata"]["name"] == "moltbot-admin" and shell["spec"]["replicas"] == 0
    container = _container(shell)
    secrets = {ref["secretRef"]["name"] for ref in container["envFrom"] if "secretRef" in ref}
    assert secrets == {"moltbot-core", render.nats_secret(permissions.ADMIN)}
    role, _ = probe.role_of(container["command"])
    assert role == "" and probe.check_for(role) is None  # its probes pass while it idles


def test_the_gateway_scales_on_cpu_and_keeps_one_replica_through_disruptions() -> None:
    objects = {(doc["kind"], doc["metadata"]["name"]): doc for doc in _k8s_objects()}
    scaler = objects[("HorizontalPodAutoscaler", "gateway")]["spec"]
    assert scaler["scaleTargetRef"]["name"] == "gateway" and scaler["minReplicas"] >= 2
    assert "replicas" not in objects[("Deployment", "gateway")]["spec"]  # the autoscaler's to set
    budgets = {name: doc["spec"] for (kind, name), doc in objects.items() if kind == "PodDisruptionBudget"}
    assert budgets["gateway"]["minAvailable"] == 1
    assert budgets["projections"]["maxUnavailable"] == 1
    for name, spec in budgets.items():  # each selects pods that exist
        matched = [
            d for d in _deployments() if spec["selector"]["matchLabels"].items() <= _pod_labels(d).items()
        ]
        assert matched, name


def test_role_manifests_are_what_render_makes_today() -> None:
    texts = render.manifests(VERSION, json.loads((ROOT / "bench" / "report.json").read_text()))
    assert set(texts) == {
        "gateway.yaml",
        "projections.yaml",
        "workers.yaml",
        "connectors.yaml",
        "admin.yaml",
        "kustomization.yaml",
    }
    stale = [name for name, text in texts.items() if (K8S / name).read_text() != text]
    assert not stale, f"run `make k8s`: {stale}"


def test_nats_values_keep_acks_on_disk_and_take_users_from_a_secret() -> None:
    values = yaml.safe_load((K8S / "nats-values.yaml").read_text())
    config = values["config"]
    assert config["cluster"]["enabled"] is True and config["cluster"]["replicas"] == 3
    assert config["jetstream"]["fileStore"]["enabled"] is True
    assert config["jetstream"]["merge"]["sync_interval"] == "always"
    assert config["merge"]["00$include"] == "../nats-users/users.conf"
    mount = values["container"]["patch"][0]["value"]
    volume = values["podTemplate"]["patch"][0]["value"]
    assert mount["mountPath"] == "/etc/nats-users" and volume["name"] == mount["name"]
    assert volume["secret"]["secretName"] == "moltbot-nats-users"
    assert not [key for key in _keys(values) if "pass" in key.lower() or key.lower() in ("user", "token")]


def _keys(tree: Any) -> list[str]:
    """Every mapping key anywhere in a parsed YAML tree."""
    if isinstance(tree, dict):
        return [str(k) for k in tree] + [key for v in tree.values() for key in _keys(v)]
    return [key for item in tree for key in _keys(item)] if isinstance(tree, list) else []


# --- the NACK export -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("nanoseconds", "text"),
    [
        (0, "0s"),
        (1, "1ns"),
        (1_500, "1.5µs"),
        (500_000_000, "500ms"),
        (1_500_000_000, "1.5s"),
        (5_000_000_000, "5s"),
        (90_000_000_000, "1m30s"),
        (120_000_000_000, "2m0s"),
        (3_661_000_000_000, "1h1m1s"),
        (604_800_000_000_000, "168h0m0s"),
    ],
)
def test_durations_are_written_as_go_prints_them(nanoseconds: int, text: str) -> None:
    assert go_duration(nanoseconds) == text
    assert _parse_go_duration(text) == nanoseconds


def _parse_go_duration(text: str) -> int:
    units = {"h": 3600 * 10**9, "m": 60 * 10**9, "s": 10**9, "ms": 10**6, "µs": 10**3, "us": 10**3, "ns": 1}
    parts = re.findall(r"(\d+(?:\.\d+)?)(ms|µs|us|ns|h|m|s)", text)
    assert "".join(n + u for n, u in parts) == text, text
    return round(sum(float(n) * units[u] for n, u in parts))


def _committed_export() -> tuple[list[str], str]:
    """The command written at the top of infra/k8s/streams.yaml, and the file."""
    text = (K8S / "streams.yaml").read_text()
    command = re.match(r"# Generated by `moltbot (streams export [^`]+)`", text)
    assert command is not None
    return shlex.split(command.group(1)), text


def test_the_committed_nack_file_is_what_the_export_makes_today(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("MOLTBOT_STREAMS_FILE", raising=False)
    argv, committed = _committed_export()
    assert main(["--data", str(tmp_path), *argv, "-o", str(tmp_path / "streams.yaml")]) == 0
    assert (tmp_path / "streams.yaml").read_text() == committed, "run `make k8s`"
    assert f"$(BIN)/moltbot {' '.join(argv)} -o infra/k8s/streams.yaml" in (ROOT / "Makefile").read_text()


def _back(spec: dict[str, Any], fields: dict[str, tuple[str, Any]]) -> dict[str, Any]:
    """A NACK spec read back as JetStream config, through the export's own table."""
    names = {nack: jetstream for jetstream, (nack, _) in fields.items()}
    config = {}
    for key, value in spec.items():
        name = names[key]
        if name in ("max_age", "duplicate_window", "ack_wait", "inactive_threshold"):
            value = _parse_go_duration(value)
        elif name == "backoff":
            value = [_parse_go_duration(step) for step in value]
        elif name == "deliver_policy":
            value = re.sub(r"[A-Z]", lambda m: "_" + m.group().lower(), value)
        elif name == "sources":
            value = [
                {
                    "name": s["name"],
                    "subject_transforms": [
                        {"src": t["source"], "dest": t["dest"]} for t in s["subjectTransforms"]
                    ],
                }
                for s in value
            ]
        config[name] = value
    return config


def test_nack_resources_say_what_streams_yaml_says_field_for_field() -> None:
    spec = load_streams_file(ROOT / "streams.yaml")
    argv, _ = _committed_export()
    replicas = int(argv[argv.index("--replicas") + 1])
    documents = _documents(K8S / "streams.yaml")
    streams = {d["spec"]["name"]: d["spec"] for d in documents if d["kind"] == "Stream"}
    consumers = {
        (d["spec"]["streamName"], d["spec"]["durableName"]): d["spec"]
        for d in documents
        if d["kind"] == "Consumer"
    }
    assert list(streams) == [s["name"] for s in spec.streams]
    assert list(consumers) == [(c.stream, c.name) for c in spec.consumers]
    for document in documents:
        assert document["apiVersion"] == "jetstream.nats.io/v1beta2"
        assert document["spec"]["preventDelete"] is True  # deleting the resource never deletes the log
        assert document["spec"]["account"] == "moltbot"
    nack_only = {"preventDelete", "account"}
    for stream in spec.streams:
        nack = streams[stream["name"]]
        assert nack.keys() <= NACK_STREAM_SPEC, nack.keys() - NACK_STREAM_SPEC
        read_back = _back({k: v for k, v in nack.items() if k not in nack_only}, STREAM_FIELDS)
        assert read_back == stream | {"num_replicas": replicas}
    for consumer in spec.consumers:
        nack = consumers[(consumer.stream, consumer.name)]
        assert nack.keys() <= NACK_CONSUMER_SPEC, nack.keys() - NACK_CONSUMER_SPEC
        read_back = _back(
            {k: v for k, v in nack.items() if k not in nack_only | {"streamName"}}, CONSUMER_FIELDS
        )
        expected = consumer.config | {"num_replicas": replicas}
        if "ack_wait" not in consumer.config:  # said outright: the server uses the first backoff step
            expected["ack_wait"] = consumer.config["backoff"][0]
        assert read_back == expected, consumer.name


def test_nack_field_names_of_the_streams_that_matter() -> None:
    documents = {
        d["spec"].get("name") or d["spec"]["durableName"]: d["spec"] for d in _documents(K8S / "streams.yaml")
    }
    events = documents["EVENTS"]
    assert (events["maxAge"], events["duplicateWindow"]) == ("0s", "2m0s")
    assert events["denyDelete"] is events["denyPurge"] is events["allowAtomicPublish"] is True
    assert (documents["DLQ"]["maxAge"], documents["LIVE"]["storage"], documents["LIVE"]["maxAge"]) == (
        "720h0m0s",
        "memory",
        "10m0s",
    )
    assert documents["LIVE"]["allowMsgTtl"] is True
    leases = documents["KV_connector_leases"]
    assert (leases["maxMsgsPerSubject"], leases["allowRollup"], leases["discard"]) == (1, True, "new")
    telegram = documents["connector-telegram"]
    assert telegram["backoff"] == ["5s", "15s", "1m0s", "5m0s"] and telegram["ackWait"] == "5s"
    assert (documents["notifier"]["deliverPolicy"], documents["notifier"]["ackWait"]) == ("new", "1m0s")


def test_the_partitioned_feed_keeps_its_subject_transform_and_follows_events_replicas() -> None:
    feed = load_partitioning(ROOT / "streams.yaml").stream
    spec = load_streams_file(ROOT / "streams.yaml")
    resources = nack_resources(spec, replicas=3, feed=feed)
    (nack,) = [r["spec"] for r in resources if r["spec"].get("name") == "EVENTS_PARTITIONED"]
    (source,) = nack["sources"]
    assert source.keys() <= NACK_SOURCE
    assert source["subjectTransforms"] == [
        {"source": t["src"], "dest": t["dest"]} for t in feed["sources"][0]["subject_transforms"]
    ]
    assert (nack["maxAge"], nack["duplicateWindow"], nack["replicas"]) == ("168h0m0s", "0s", 3)
    assert "account" not in nack


@pytest.mark.parametrize(
    ("stream", "named"),
    [
        (
            {"name": "X", "subjects": ["x.>"], "republish": {"src": "x.>", "dest": "y.>"}},
            "streams[X].republish",
        ),
        ({"name": "X", "max_age": "1h"}, "streams[X].max_age"),
        ({"name": "X", "retention": "forever"}, "streams[X].retention"),
        (
            {"name": "X", "sources": [{"name": "E", "external": {"api": "$JS.x"}}]},
            "streams[X].sources[0].external",
        ),
    ],
)
def test_a_field_nack_cannot_express_stops_the_export_by_name(stream: dict[str, Any], named: str) -> None:
    with pytest.raises(NackError, match=re.escape(named)):
        nack_resources(StreamsFile(streams=[stream]))


def test_a_consumer_field_nack_cannot_express_is_named_too() -> None:
    consumer = ConsumerSpec(stream="X", config={"durable_name": "d", "pause_until": "2026-01-01T00:00:00Z"})
    with pytest.raises(NackError, match=re.escape("consumers[X/d].pause_until")):
        nack_resources(StreamsFile(streams=[], consumers=[consumer]))


def test_export_help_names_the_format_and_the_output() -> None:
    usage = _commands(_commands(build_parser())["streams"])["export"].format_help()
    assert "--format {nack}" in usage and "-o FILE" in usage and "NACK" in usage


# --- nats users for deployments ----------------------------------------------------------------


def test_nats_users_writes_one_login_file_per_role(tmp_path: Path) -> None:
    out = tmp_path / "nats"
    assert main(["--data", str(tmp_path), "nats", "users", "--out", str(out), "--env-files"]) == 0
    passwords = json.loads((out / "credentials.json").read_text())["users"]
    assert set(passwords) == set(permissions.roles(CONNECTOR_KINDS))
    for role, password in passwords.items():
        login = out / "env" / f"{role}.env"
        assert login.read_text() == f"MOLTBOT_NATS_USER={role}\nMOLTBOT_NATS_PASSWORD={password}\n"
        assert stat.S_IMODE(login.stat().st_mode) == 0o600
    assert (
        main(
            ["--data", str(tmp_path), "nats", "users", "--out", str(out), "--env-files", "--rotate", "agent"]
        )
        == 0
    )
    rotated = json.loads((out / "credentials.json").read_text())["users"]
    assert rotated["agent"] != passwords["agent"] and rotated["gateway"] == passwords["gateway"]
    assert rotated["agent"] in (out / "env" / "agent.env").read_text()


# --- Docker Compose -----------------------------------------------------------------------------


def test_compose_runs_only_roles_that_exist_each_as_its_nats_user() -> None:
    services = _role_services()
    commands = {name: svc["command"] for name, svc in services.items()}
    for name, args in commands.items():
        _parses(args)
        user = _nats_user(args)
        logins = [f for f in services[name]["env_file"] if "/nats/env/" in f]
        if name == "streams":
            assert args[:2] == ["streams", "apply"] and logins == ["compose/secrets/nats/env/admin.env"]
        else:
            assert logins == ([f"compose/secrets/nats/env/{user}.env"] if user else []), name
    roles = {args[0] for name, args in commands.items() if name != "streams"}
    assert roles == _cli_roles()
    assert sorted(args[1] for args in commands.values() if args[0] == "connector") == sorted(CONNECTOR_KINDS)
    partitioned = [_parses(args) for args in commands.values() if args[0] == "projections"]
    assert sorted(a.partition for a in partitioned) == list(range(3)) and {
        a.partitions for a in partitioned
    } == {3}
    assert sum(args[0] == "gateway" for args in commands.values()) == 2


def test_compose_keeps_secrets_in_files_and_the_nodes_in_a_cluster() -> None:
    compose = _compose()
    for name, service in compose["services"].items():
        environment = service.get("environment", {})
        assert not [k for k in environment if SECRET_WORDS.search(k)], name
    for name, secret in compose["secrets"].items():
        assert secret["file"].startswith("./compose/secrets/"), name
    for name in ("nats-1", "nats-2", "nats-3"):
        assert {s["target"] for s in compose["services"][name]["secrets"]} == {
            "/etc/nats/users.conf",
            "/etc/nats/routes.conf",
        }
    caddyfile = (INFRA / "compose" / "Caddyfile").read_text()
    assert "reverse_proxy gateway-1:8000 gateway-2:8000" in caddyfile
    proxy = compose["services"]["proxy"]["networks"]["edge"]["ipv4_address"]
    assert compose["services"]["gateway-1"]["environment"]["MOLTBOT_TRUSTED_PROXIES"] == proxy
    ignored = (INFRA / "compose" / "secrets" / ".gitignore").read_text().splitlines()
    assert "*" in ignored and "!*.example" in ignored


def test_the_compose_nats_config_is_one_nats_server_accepts(tmp_path: Path) -> None:
    """nats-server itself reads the node config with the users of `moltbot nats users` and the
    routes of the example, as the Compose secrets mount them beside it."""
    assert main(["--data", str(tmp_path), "nats", "users", "--out", str(tmp_path / "gen")]) == 0
    (tmp_path / "nats.conf").write_text((INFRA / "compose" / "nats.conf").read_text())
    (tmp_path / "users.conf").write_text((tmp_path / "gen" / "users.conf").read_text())
    (tmp_path / "routes.conf").write_text(
        (INFRA / "compose" / "secrets" / "nats-routes.conf.example").read_text()
    )
    checked = subprocess.run(
        [str(find_nats_server_binary()), "-t", "-c", str(tmp_path / "nats.conf")],
        env={"NATS_SERVER_NAME": "nats-1"},
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert checked.returncode == 0, checked.stdout + checked.stderr
    config = (INFRA / "compose" / "nats.conf").read_text()
    assert "sync_interval: always" in config and "include ./users.conf" in config


# --- the image ---------------------------------------------------------------------------------


def _stages(dockerfile: str) -> list[str]:
    return re.split(r"(?m)^FROM ", dockerfile)[1:]


def test_the_image_installs_the_locked_hashes_and_runs_as_a_user() -> None:
    dockerfile = (INFRA / "Dockerfile").read_text()
    build, final = _stages(dockerfile)
    assert build.startswith("${PYTHON} AS build") and final.startswith("${PYTHON}\n")
    assert re.search(r"(?m)^ARG PYTHON=python:3\.11-slim", dockerfile)
    assert "COPY requirements.lock pyproject.toml infra/runtime_lock.py ./" in build
    assert "python runtime_lock.py requirements.lock pyproject.toml > runtime.lock" in build
    assert "pip install --require-hashes --no-deps -r runtime.lock" in build
    assert "pip install --no-deps ." in build
    assert "PIP_NO_CACHE_DIR=1" in build
    (user,) = re.findall(r"(?m)^USER (\S+)", final)
    assert user.split(":")[0] not in ("0", "root") and int(user.split(":")[0]) == render.UID
    assert re.search(r'(?m)^ENTRYPOINT \["moltbot"\]$', final)
    assert 'CMD ["python", "/opt/moltbot/probe.py"]' in final
    assert not re.search(r"gcc|build-essential|\bmake\b|--no-install-recommends .*-dev\b", final)
    assert "COPY --from=build /opt/moltbot/venv /opt/moltbot/venv" in final
    assert re.search(rf"(?m)^ARG VERSION={re.escape(VERSION)}$", final)
    for label in ("version", "source", "revision"):
        assert f"org.opencontainers.image.{label}=" in final
    for source in re.findall(r"(?m)^COPY (?!--from)(.+) \S+$", dockerfile):
        for path in source.split():
            assert (ROOT / path).exists(), path
    ignored = (ROOT / ".dockerignore").read_text().splitlines()
    assert {"infra/compose/secrets", "infra/k8s/secrets", ".venv", "tests"} <= set(ignored)


def test_the_runtime_lock_keeps_what_the_product_needs_hashes_and_all() -> None:
    lock = (ROOT / "requirements.lock").read_text()
    entries = runtime_lock.parse_lock(lock)
    direct = runtime_lock.project_dependencies((ROOT / "pyproject.toml").read_text())
    kept = runtime_lock.runtime_entries(entries, direct)
    names = {entry.name for entry in kept}
    assert direct <= names
    assert {
        "aiohttp",
        "psycopg-binary",
        "psycopg-pool",
        "cryptography",
        "pydantic",
    } <= names  # through parents
    assert not names & {
        "pytest",
        "mypy",
        "ruff",
        "playwright",
        "hypothesis",
        "moto",
        "matplotlib",
        "uv",
        "schemathesis",
    }
    for entry in kept:
        assert entry.text in lock  # as the lock writes it
        assert "--hash=sha256:" in entry.text
    assert len(kept) < len(entries)


# --- the probe --------------------------------------------------------------------------------


def test_the_probe_finds_the_role_pid_1_runs() -> None:
    venv = ["/opt/moltbot/venv/bin/python", "/opt/moltbot/venv/bin/moltbot"]
    assert probe.role_of([*venv, "gateway", "--host", "0.0.0.0", ""]) == (
        "gateway",
        ["--host", "0.0.0.0", ""],
    )
    assert probe.role_of([*venv, "--data", "/d", "connector", "telegram"])[0] == "connector"
    assert probe.role_of([*venv, "--data=/d", "projections", "run"])[0] == "projections"
    assert probe.role_of(["sleep", "1"]) == ("", [])
    for role in _cli_roles():
        assert probe.check_for(role) in ("http", "nats", "postgres")
    assert probe.check_for("streams") is None  # a one-off command has nothing to check


def test_the_probe_reads_ports_and_connections() -> None:
    assert probe.server_ports("tls://nats-1:4222,tls://nats-2:4223,nats://nats-3", 4222) == {4222, 4223}
    assert probe.server_ports("postgresql://u:p@db:5433/x?sslmode=require", 5432) == {5433}
    assert probe.server_ports("postgresql://u@h1:5432,h2:5434/x", 5432) == {5432, 5434}
    assert probe.server_ports("host=db port=6432 dbname=x", 5432) == {6432}
    assert probe.server_ports(None, 4222) == {4222}
    assert probe.gateway_port(["--port", "9000"], {}) == 9000
    assert probe.gateway_port([], {"MOLTBOT_GATEWAY_PORT": "8100"}) == 8100
    table = (
        "  sl  local_address rem_address   st tx_queue rx_queue\n"
        "   0: 0100007F:1F90 00000000:0000 0A 00000000:00000000\n"  # listening on 8000
        "   1: 0A000005:C350 0A000009:107E 01 00000000:00000000\n"  # established to :4222
        "   2: 0A000005:C351 0A00000A:1538 06 00000000:00000000\n"  # TIME_WAIT to :5432
    )
    assert probe.connected_ports([table]) == {4222}


# --- the runbook claims only what exists --------------------------------------------------------


def _section(text: str, title: str) -> str:
    start = text.index(f"\n## {title}\n")
    end = text.find("\n## ", start + 1)
    return text[start : end if end != -1 else None]


def test_the_runbook_names_only_metrics_the_gateway_exports() -> None:
    alerts = _section((ROOT / "docs" / "operations.md").read_text(), "Alerts")
    exported = set(re.findall(r"moltbot_[a-z_]+", (ROOT / "gateway" / "routes" / "health.py").read_text()))
    named = set(re.findall(r"`(moltbot_[a-z_]+)", alerts))
    assert named == exported  # every series, and none that does not exist
    assert "Not exported as metrics: agent failures" in alerts
    assert "docs/operations.md#deploying" in (ROOT / "README.md").read_text()


def test_the_runbook_erases_again_from_the_tables_the_erasure_does() -> None:
    """The restore runbook repeats gateway/erasure.py by hand: the same tables, so a table added
    to the erasure is added there too."""
    from adapters.postgres import erasure

    restore = _section((ROOT / "docs" / "operations.md").read_text(), "Backing up and restoring a deployment")
    arrays = re.findall(r"unnest\(ARRAY\[([^\]]+)\]\)", restore)
    tenant_tables, user_tables = ([t.strip(" '\n") for t in array.split(",")] for array in arrays)
    assert tenant_tables == list(erasure.TENANT_TABLES)
    assert user_tables == list(erasure.USER_TABLES)
    assert "DELETE FROM vault.data_keys WHERE tenant_id = :'tenant'" in restore
    assert "INSERT INTO vault.erased_tenants" in restore
