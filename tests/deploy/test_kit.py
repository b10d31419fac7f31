"""The deployment kit (deploy/): every file parses, and what it names exists in the project:
the commands and options it runs, the ports and health paths the commands serve, the
environment variables the project reads, the config keys the config model accepts, the
metrics the alert rules and dashboards query. Fast, no network (health endpoints are
served on 127.0.0.1 in-process). Nothing here builds the image or starts a container."""

from __future__ import annotations

import json
import re
import shlex
import shutil
import subprocess
import urllib.parse
import urllib.request
from pathlib import Path
from typing import Any

import pytest
import typer
import yaml
from prometheus_client import CollectorRegistry

from qa_pipeline.asr_worker import WorkerMetrics
from qa_pipeline.cli import app
from qa_pipeline.config import load_config
from qa_pipeline.evaluate_stage import EvaluateMetrics
from qa_pipeline.ingest import IngestMetrics
from qa_pipeline.live.metrics import LiveMetrics
from qa_pipeline.notify import NotifyMetrics
from qa_pipeline.stage_health import serve_health
from qa_pipeline.store.base import store_path
from qa_pipeline.store.writer import LiveRun, StoreWriter

ROOT = Path(__file__).resolve().parents[2]
DEPLOY = ROOT / "deploy"
K8S = DEPLOY / "k8s"
IMAGE = "qa-pipeline"

# set for the image's own use, not read by the project: why each is allowed
NOT_PROJECT_ENV = {
    "PATH": "the virtualenv's bin first",
    "PYTHONUNBUFFERED": "log lines leave at once",
    "PIP_NO_CACHE_DIR": "build stage only",
    "PIP_DISABLE_PIP_VERSION_CHECK": "build stage only",
}
# read by libpq (psycopg), the store's PostgreSQL client, not by qa_pipeline's own code
LIBPQ_ENV = {"PGPASSWORD": "the store's password, kept out of the URL and the command line"}


def yaml_docs(path: Path) -> list[Any]:
    return [d for d in yaml.safe_load_all(path.read_text(encoding="utf-8")) if d is not None]


def compose() -> dict[str, Any]:
    doc = yaml_docs(DEPLOY / "compose.yaml")[0]
    assert isinstance(doc, dict)
    return doc


def qa_services() -> dict[str, dict[str, Any]]:
    return {n: s for n, s in compose()["services"].items() if s.get("image", "").startswith(IMAGE)}


def k8s_objects() -> list[dict[str, Any]]:
    return [d for f in sorted(K8S.glob("*.yaml")) for d in yaml_docs(f)]


def pod_spec(obj: dict[str, Any]) -> dict[str, Any] | None:
    if obj["kind"] in ("Deployment", "Job", "StatefulSet"):
        spec: dict[str, Any] = obj["spec"]["template"]["spec"]
        return spec
    return None


def k8s_containers(key: str = "containers") -> list[tuple[dict[str, Any], dict[str, Any]]]:
    """The qa-pipeline containers of the manifests (``key="initContainers"``: the init
    containers)."""
    out = []
    for obj in k8s_objects():
        spec = pod_spec(obj)
        for c in (spec or {}).get(key, []):
            if c["image"].split(":")[0] == IMAGE:
                out.append((obj, c))
    return out


def k8s_all_containers() -> list[tuple[dict[str, Any], dict[str, Any]]]:
    return k8s_containers() + k8s_containers("initContainers")


def k8s_arg_refs(c: dict[str, Any]) -> set[str]:
    """The ``$(NAME)`` references of a container's args (Kubernetes expands them from the
    container's env)."""
    return {n for a in c.get("args", []) for n in re.findall(r"\$\(([A-Za-z_]\w*)\)", str(a))}


def dockerfile() -> str:
    return (DEPLOY / "Dockerfile").read_text(encoding="utf-8")


def invocations() -> list[tuple[str, list[str]]]:
    """Every `qa-pipeline` argument list the kit runs: (where, args)."""
    out = [(f"compose {n}", [str(a) for a in s["command"]]) for n, s in qa_services().items()]
    out += [
        (f"k8s {o['metadata']['name']}/{c['name']}", [str(a) for a in c["args"]])
        for o, c in k8s_all_containers()
    ]
    cmd = re.search(r"^CMD (\[.*\])$", dockerfile(), re.M)
    assert cmd
    out.append(("Dockerfile CMD", json.loads(cmd.group(1))))
    for line in re.findall(r"^\s*#?\s*(?:RUN )?qa-pipeline (.+?)(?: \\|$| &&)", dockerfile(), re.M):
        out.append(("Dockerfile", shlex.split(line.split("#")[0])))
    return out


def click_command(args: list[str]) -> tuple[Any, list[str]]:
    """The (click) command ``args`` selects, sub-groups followed, and the rest of ``args``."""
    cmd: Any = typer.main.get_command(app)
    rest = list(args)
    while hasattr(cmd, "list_commands") and rest and not rest[0].startswith("-"):
        sub = cmd.get_command(cmd.context_class(cmd), rest[0])
        assert sub is not None, f"no command {rest[0]!r} in {args}"
        cmd, rest = sub, rest[1:]
    return cmd, rest


def option(args: list[str], name: str) -> str | None:
    return args[args.index(name) + 1] if name in args else None


def default_of(command: str, name: str) -> Any:
    cmd, _ = click_command([command])
    for p in cmd.params:
        if name in getattr(p, "opts", []):
            return p.default
    raise AssertionError(f"{command} has no {name}")


def env_names_read_by_project() -> set[str]:
    """Upper-case string literals in the package's sources (environment variable names are
    spelled there: os.environ.get("..."), envvar="...", key_env defaults, *_ENV constants)."""
    names: set[str] = set()
    for f in (ROOT / "qa_pipeline").rglob("*.py"):
        names |= set(re.findall(r"[\"']([A-Z][A-Z0-9]*_[A-Z0-9_]+)[\"']", f.read_text("utf-8")))
    return names


def exported_series() -> set[str]:
    registry = CollectorRegistry()
    LiveMetrics(registry)
    NotifyMetrics(registry)
    registries = [registry, WorkerMetrics("qa-asr").registry, EvaluateMetrics().registry]
    registries.append(IngestMetrics().registry)
    store = StoreWriter("unused.sqlite", LiveRun("live:p:1", "p", "1", "evaluate"))  # not started
    registries.append(store.metrics.registry)
    names = {"up"}  # Prometheus's own, per target
    for reg in registries:
        for fam in reg.collect():
            if fam.type == "counter":
                names.add(fam.name + "_total")
            elif fam.type == "histogram":
                names.update(fam.name + s for s in ("_bucket", "_sum", "_count"))
            else:
                names.add(fam.name)
    return names


PROMQL_WORDS = {"by", "without", "on", "ignoring", "group_left", "group_right", "and", "or"}
PROMQL_WORDS |= {"unless", "bool", "offset", "inf", "nan"}


def metric_names(expr: str) -> set[str]:
    """The metric names a PromQL expression selects (as in tests/dashboard/test_grafana.py)."""
    e = re.sub(r'"(?:[^"\\]|\\.)*"', '""', expr)
    e = re.sub(r"\{[^}]*\}", "", e)
    e = re.sub(r"\[[^\]]*\]", "", e)
    e = re.sub(r"\b(by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)", " ", e)
    e = re.sub(r"\$\w+", " ", e)
    e = re.sub(r"\boffset\s+\w+", " ", e)
    e = re.sub(r"(?<![\w:])\d+(\.\d+)?([eE][+-]?\d+)?", " ", e)
    names = set()
    for m in re.finditer(r"[A-Za-z_:][A-Za-z0-9_:]*", e):
        if e[m.end() :].lstrip().startswith("(") or m.group(0).lower() in PROMQL_WORDS:
            continue
        names.add(m.group(0))
    return names


# -- files parse ---------------------------------------------------------------------------------


def test_every_yaml_and_json_file_parses() -> None:
    files = sorted(p for p in DEPLOY.rglob("*") if p.suffix in (".yml", ".yaml", ".json"))
    assert len(files) >= 15
    for f in files:
        if f.suffix == ".json":
            assert isinstance(json.loads(f.read_text("utf-8")), dict), f
        else:
            assert yaml_docs(f), f
    kinds = {o["kind"] for o in k8s_objects()}
    assert {"Deployment", "ConfigMap", "Job", "ScaledObject", "Service"} <= kinds


# -- commands and options ------------------------------------------------------------------------


def test_every_command_and_option_exists() -> None:
    seen = set()
    for where, args in invocations():
        cmd, rest = click_command(args)
        opts = {o for p in cmd.params for o in getattr(p, "opts", [])} | {"--help"}
        for tok in rest:
            if tok.startswith("--"):
                assert tok.split("=")[0] in opts, f"{where}: {cmd.name} has no {tok}"
        seen.add(cmd.name)
        if "--help" in rest:
            continue
        # the values parse as the command's own types (the callback is not run)
        with cmd.make_context(cmd.name or "", list(rest)) as ctx:
            assert ctx.params is not None
    assert {"ingest", "asr-worker", "evaluate", "dashboard", "install", "migrate"} <= seen


def test_the_checker_catches_a_wrong_option() -> None:
    cmd, rest = click_command(["asr-worker", "--health-prot", "9464"])
    assert "--health-prot" not in {o for p in cmd.params for o in getattr(p, "opts", [])}
    with pytest.raises(Exception) as err:
        cmd.make_context(cmd.name or "", rest)
    assert type(err.value).__name__ == "NoSuchOption" and "--health-prot" in str(err.value)


def test_the_stages_use_the_same_topics_and_groups_as_keda() -> None:
    """KEDA scales on the lag of the group and topic the asr-workers really consume."""
    (scaled,) = [o for o in k8s_objects() if o["kind"] == "ScaledObject"]
    (trigger,) = scaled["spec"]["triggers"]
    assert trigger["type"] == "kafka"
    (worker,) = [(o, c) for o, c in k8s_containers() if c["args"][0] == "asr-worker"]
    assert scaled["spec"]["scaleTargetRef"]["name"] == worker[0]["metadata"]["name"]
    args = [str(a) for a in worker[1]["args"]]
    group = option(args, "--group") or default_of("asr-worker", "--group")
    topic = option(args, "--input") or default_of("asr-worker", "--input")
    assert trigger["metadata"]["consumerGroup"] == group
    assert trigger["metadata"]["topic"] == topic
    config = yaml.safe_load(configmap_pipeline_yaml())
    assert (
        trigger["metadata"]["bootstrapServers"].split(",")
        == config["sinks"]["kafka"]["bootstrap_servers"]
    )
    # the evaluators' input is what the workers write; the sinks never write to it
    for where, a in invocations():
        if a and a[0] == "evaluate":
            assert (option(a, "--topic") or default_of("evaluate", "--topic")) == default_of(
                "asr-worker", "--output"
            ), where
    # compose creates the stage topics the stages read
    init = " ".join(compose()["services"]["kafka-init"]["command"])
    for t in (default_of("asr-worker", "--input"), default_of("evaluate", "--topic")):
        assert f"--topic {t} " in init


def test_compose_runs_the_issue_s_services() -> None:
    services = compose()["services"]
    kafka = services["kafka"]["environment"]
    assert "controller" in kafka["KAFKA_PROCESS_ROLES"] and "KAFKA_ZOOKEEPER_CONNECT" not in kafka
    for name in ("prometheus", "alertmanager", "grafana"):
        assert name in services
    stages = {n: s["command"][0] for n, s in qa_services().items()}
    assert sorted(stages.values()) == ["asr-worker", "dashboard", "evaluate", "ingest", "store"]
    assert str(services["asr-worker"]["deploy"]["replicas"]).startswith("${ASR_WORKERS")
    assert services["evaluate"]["deploy"]["replicas"] == 2
    assert "/calls" in services["ingest"]["command"]
    assert any(v.endswith(":/calls:ro") for v in services["ingest"]["volumes"])


# -- ports and health paths ----------------------------------------------------------------------


def get(url: str) -> tuple[int, bytes]:
    try:
        with urllib.request.urlopen(url, timeout=5) as r:
            return r.status, r.read()
    except urllib.error.HTTPError as e:
        return e.code, e.read()


def test_the_stages_serve_healthz_and_metrics() -> None:
    """What the probes and scrapes ask for is what the commands serve (the stages' shared
    health server; the dashboard's route)."""
    for metrics, name in (
        (WorkerMetrics("qa-asr"), b"qa_asr_worker_segments_total"),
        (EvaluateMetrics(), b"qa_eval_records_total"),
        (IngestMetrics(), b"qa_ingest_segments_total"),
    ):
        server = serve_health(metrics.registry, metrics.heartbeat, "127.0.0.1", 0)
        try:
            base = f"http://127.0.0.1:{server.port}"
            assert get(base + "/healthz") == (200, b"ok\n")
            status, body = get(base + "/metrics")
            assert status == 200 and name in body
        finally:
            server.stop()
    src = (ROOT / "qa_pipeline" / "dashboard" / "server.py").read_text("utf-8")
    assert 'r.add_get("/healthz", app.healthz)' in src


def health_port(args: list[str]) -> int | None:
    value = option(args, "--health-port") or option(args, "--port")
    return int(value) if value is not None else None


def test_compose_ports_and_health_checks_match_the_commands() -> None:
    prom = yaml_docs(DEPLOY / "compose" / "prometheus.yml")[0]
    scraped = {
        sd["names"][0]: sd["port"] for job in prom["scrape_configs"] for sd in job["dns_sd_configs"]
    }
    for name, svc in qa_services().items():
        args = [str(a) for a in svc["command"]]
        if args[0] in ("asr-worker", "evaluate", "ingest"):
            port = health_port(args)
            assert option(args, "--health-host") == "0.0.0.0", name  # reachable by Prometheus
            assert scraped[name] == port, name
            if args[0] == "ingest":
                assert "healthcheck" not in svc, name  # a run that ends: scraped, not probed
                continue
        elif args[0] == "dashboard":
            port = health_port(args)
            assert option(args, "--host") == "0.0.0.0"
            assert any(str(p).endswith(f":{port}:{port}") for p in svc["ports"])
        elif args[:2] == ["store", "migrate"]:  # one step that ends: nothing to probe
            assert "healthcheck" not in svc and "ports" not in svc and svc["restart"] == "no"
            continue
        else:
            raise AssertionError(f"{name}: no check for {args[0]}")
        test = " ".join(svc["healthcheck"]["test"])
        assert f"http://127.0.0.1:{port}/healthz" in test, name
    assert set(scraped) == {"asr-worker", "evaluate", "ingest"}
    jobs = {j["job_name"] for j in prom["scrape_configs"]}
    assert jobs == {"qa-asr-worker", "qa-evaluate", "qa-ingest"}


def test_k8s_probes_and_ports_match_the_commands() -> None:
    exposed = {int(p) for p in re.findall(r"^EXPOSE (.+)$", dockerfile(), re.M)[0].split()}
    for obj, c in k8s_containers():
        args = [str(a) for a in c["args"]]
        name = obj["metadata"]["name"]
        port = health_port(args)
        assert port in exposed, name
        ports = {p["name"]: p["containerPort"] for p in c["ports"]}
        assert port in ports.values(), name
        assert option(args, "--health-host") in (None, "0.0.0.0") and (
            option(args, "--host") in (None, "0.0.0.0")
        )
        ann = obj["spec"]["template"]["metadata"].get("annotations", {})
        if "prometheus.io/port" in ann:
            assert (
                int(ann["prometheus.io/port"]) == port and ann["prometheus.io/path"] == "/metrics"
            )
        if obj["kind"] == "Job":  # a run that ends: scraped while it runs, never probed
            assert args[0] == "ingest" and "readinessProbe" not in c
            assert "livenessProbe" not in c and "prometheus.io/port" in ann
            continue
        assert obj["kind"] == "Deployment", name
        for probe in ("readinessProbe", "livenessProbe"):
            get_ = c[probe]["httpGet"]
            assert get_["path"] == "/healthz", name
            assert ports[get_["port"]] == port, name
    stages = {c["args"][0] for o, c in k8s_containers() if o["kind"] == "Deployment"}
    assert stages == {"asr-worker", "evaluate", "dashboard"}


# -- environment and config ----------------------------------------------------------------------


def configmap_pipeline_yaml() -> str:
    (cm,) = [o for o in k8s_objects() if o["kind"] == "ConfigMap"]
    text: str = cm["data"]["pipeline.yaml"]
    return text


def config_env_refs(text: str) -> set[str]:
    """The ``${NAME}`` references of a config's values (comments left out)."""
    refs: set[str] = set()

    def walk(node: Any) -> None:
        if isinstance(node, str):
            refs.update(re.findall(r"(?<!\$)\$\{([A-Za-z_][A-Za-z0-9_]*)\}", node))
        elif isinstance(node, dict):
            for v in node.values():
                walk(v)
        elif isinstance(node, list):
            for v in node:
                walk(v)

    walk(yaml.safe_load(text) if text else None)
    return refs


def set_env() -> list[tuple[str, set[str], str, set[str]]]:
    """(where, env names set, the config text the container reads ("" when it reads none),
    the names its command line uses: Kubernetes expands ``$(NAME)`` in args)."""
    out = []
    compose_config = (DEPLOY / "config" / "pipeline.yaml").read_text("utf-8")
    for name, svc in qa_services().items():
        env = svc.get("environment", {})
        config = compose_config if "--config" in svc["command"] else ""
        out.append((f"compose {name}", set(env), config, set()))
    for obj, c in k8s_all_containers():
        names = {e["name"] for e in c.get("env", [])}
        assert "envFrom" not in c, "name each variable (least privilege, checkable)"
        config = configmap_pipeline_yaml() if "--config" in c["args"] else ""
        where = f"k8s {obj['metadata']['name']}/{c['name']}"
        out.append((where, names, config, k8s_arg_refs(c)))
    df_env = set()
    for block in re.findall(r"^ENV ((?:.*\\\n)*.*)$", dockerfile(), re.M):
        df_env |= set(re.findall(r"([A-Z_][A-Z0-9_]*)=", block))
    out.append(("Dockerfile", df_env, "", set()))
    return out


SECRET_SUFFIXES = ("_KEY", "_TOKEN", "PASSWORD")


def test_every_env_var_is_one_the_project_reads() -> None:
    known = env_names_read_by_project()
    assert {"QA_PIPELINE_PRIVACY_KEY", "QA_DASHBOARD_TOKEN", "QA_LOG_FORMAT"} <= known
    assert "QA_PIPELINE_CACHE" in known
    for where, names, config, args in set_env():
        assert args <= names, f"{where}: its args name {sorted(args - names)}, not set"
        used = known | config_env_refs(config) | args | set(NOT_PROJECT_ENV) | set(LIBPQ_ENV)
        for n in names:
            assert n in used, f"{where}: {n} is neither read by qa_pipeline nor used by its config"
    assert "QA_PIPELINE_NO_SUCH_SETTING" not in known


def test_secrets_come_from_the_environment() -> None:
    """Every ${NAME} of a mounted config is set in each container that reads it, and the
    privacy key (hash mode) is set wherever the config is read (text is redacted there);
    every secret is a reference, never a value in the kit."""
    for where, names, config, _ in set_env():
        if where == "Dockerfile" or not config:
            continue
        assert config_env_refs(config) <= names, where
        assert "QA_PIPELINE_PRIVACY_KEY" in names, where
    for name, svc in compose()["services"].items():
        for k, v in (svc.get("environment") or {}).items():
            if k.endswith(SECRET_SUFFIXES):
                assert re.fullmatch(r"\$\{\w+:\?.+\}", str(v)), (
                    f"{name}: {k} must come from the env"
                )
    for obj, c in k8s_all_containers():
        for e in c.get("env", []):
            if e["name"].endswith(SECRET_SUFFIXES):
                assert "secretKeyRef" in e["valueFrom"], (obj["metadata"]["name"], e["name"])


@pytest.mark.parametrize("which", ["compose", "k8s"])
def test_mounted_configs_validate(
    which: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    if which == "compose":
        path = DEPLOY / "config" / "pipeline.yaml"
    else:
        path = tmp_path / "pipeline.yaml"
        path.write_text(configmap_pipeline_yaml(), encoding="utf-8")
    for name in config_env_refs(path.read_text("utf-8")):
        monkeypatch.setenv(name, "x-secret")
    cfg = load_config(path)
    kafka = cfg.sinks.kafka
    assert kafka is not None and kafka.bootstrap_servers
    assert cfg.privacy.mode == "hash" and cfg.privacy.key_env == "QA_PIPELINE_PRIVACY_KEY"
    # the evaluator refuses sinks that write to the topic it reads
    stage_topic = default_of("evaluate", "--topic")
    assert stage_topic not in kafka.topics.model_dump().values()
    if which == "k8s":
        assert kafka.security_protocol == "SASL_SSL" and kafka.sasl_plain_password is not None
        # the CA file is where the Secret is mounted
        mounts = {m["mountPath"] for _, c in k8s_containers() for m in c["volumeMounts"]}
        assert str(Path(str(kafka.ssl_cafile)).parent) in mounts


def test_a_wrong_config_key_is_caught(tmp_path: Path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text("sinks:\n  kafka:\n    bootstrap_server: [kafka:9092]\n", encoding="utf-8")
    with pytest.raises(Exception, match="bootstrap_server"):
        load_config(bad)


# -- Dockerfile ----------------------------------------------------------------------------------


def test_dockerfile_installs_the_project_and_the_embedded_model() -> None:
    text = dockerfile()
    assert re.search(r"^FROM \$\{DEBIAN_IMAGE\}", text, re.M)
    assert re.search(r"^ARG DEBIAN_IMAGE=debian:", text, re.M)
    extras = re.search(r'pip install "/src\[([a-z,]+)\]"', text)
    assert extras
    pyproject = (ROOT / "pyproject.toml").read_text("utf-8")
    for extra in extras.group(1).split(","):
        assert re.search(rf"^{extra} = \[", pyproject, re.M), extra
    assert "qa-pipeline model install" in text
    assert "huggingface" not in text.lower() and "hf_hub" not in text.lower()
    assert 'ENTRYPOINT ["tini", "--", "qa-pipeline"]' in text
    ignore = (DEPLOY / "Dockerfile.dockerignore").read_text("utf-8")
    for needed in ("pyproject.toml", "setup.py", "README.md", "qa_pipeline", "configs"):
        assert f"!{needed}" in ignore


# -- metrics: alert rules and the stages dashboard -----------------------------------------------


def test_alert_expressions_name_exported_metrics() -> None:
    exported = exported_series()
    rules = [
        r for g in yaml_docs(DEPLOY / "prometheus" / "alerts.yml")[0]["groups"] for r in g["rules"]
    ]
    alerts = {r["alert"] for r in rules}
    assert {"QAAsrConsumerLagHigh", "QAOldestSegmentOld", "QAEvalConsumerLagHigh"} <= alerts
    assert "QAEvalCallOpenTooLong" in alerts
    assert {"QAStoreDown", "QAStoreCallsDropped", "QAStoreQueueNearlyFull"} <= alerts
    for r in rules:
        names = metric_names(r["expr"])
        assert names, r["alert"]
        assert names <= exported, f"{r['alert']}: {sorted(names - exported)} not exported"
    stage_exprs = " ".join(r["expr"] for r in rules)
    for needed in (
        "qa_consumer_lag",
        "qa_oldest_unprocessed_age_seconds",
        "qa_eval_oldest_open_call_age_seconds",
        "qa_store_up",
        "qa_store_dropped_total",
        "qa_store_queue_capacity",
    ):
        assert needed in stage_exprs
    assert metric_names("sum by (group) (qa_consumer_lagg)") - exported == {"qa_consumer_lagg"}


def test_the_stages_dashboard_has_its_panels() -> None:
    doc = json.loads((DEPLOY / "grafana" / "qa-pipeline-stages.json").read_text("utf-8"))
    exported = exported_series()
    panels = [p for p in doc["panels"] if p["type"] != "row"]
    exprs = " ".join(t["expr"] for p in panels for t in p["targets"])
    for needle in (
        "qa_consumer_lag",
        "qa_oldest_unprocessed_age_seconds",
        "qa_eval_oldest_open_call_age_seconds",
        "qa_ingest_segments_total",
        "qa_ingest_open_legs",
        "rate(qa_asr_worker_segments_total",
        "rate(qa_asr_worker_decode_seconds_total",
        "rate(qa_eval_events_total",
        "rate(qa_store_writes_total",
        "qa_store_dropped_total",
        "qa_store_write_errors_total",
        "qa_store_queue{",
        "qa_store_queue_capacity",
        "qa_store_up",
    ):
        assert needle in exprs, needle
    for p in panels:
        assert p["datasource"]["uid"] == "${datasource}"
        for t in p["targets"]:
            assert metric_names(t["expr"]) <= exported, (p["title"], t["expr"])
    ids = [p["id"] for p in doc["panels"]]
    assert len(ids) == len(set(ids)) and doc["uid"] == "qa-pipeline-stages"
    # provisioned: Grafana loads the folder the compose file mounts the dashboards into
    prov = yaml_docs(DEPLOY / "grafana" / "provisioning" / "dashboards" / "qa-pipeline.yml")[0]
    path = prov["providers"][0]["options"]["path"]
    assert any(v == f"./grafana:{path}:ro" for v in compose()["services"]["grafana"]["volumes"])


def test_promtool_checks_the_compose_prometheus_config(tmp_path: Path) -> None:
    promtool = shutil.which("promtool")
    if promtool is None:
        pytest.fail("promtool not found: apt-get install -y --no-install-recommends prometheus")
    shutil.copy(DEPLOY / "compose" / "prometheus.yml", tmp_path / "prometheus.yml")
    shutil.copy(DEPLOY / "prometheus" / "alerts.yml", tmp_path / "alerts.yml")
    res = subprocess.run(
        [promtool, "check", "config", str(tmp_path / "prometheus.yml")],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert res.returncode == 0, res.stdout + res.stderr


def test_promtool_runs_the_alert_rules_unit_tests(tmp_path: Path) -> None:
    """alerts_test.yml: each alert fires on its own scenario, at its time, with its text
    (QAStoreDown after 2 minutes, QAStoreCallsDropped, QAStoreQueueNearlyFull against the
    process's own queue size, the stages' and the sinks' alerts)."""
    promtool = shutil.which("promtool")
    if promtool is None:
        pytest.fail("promtool not found: apt-get install -y --no-install-recommends prometheus")
    for name in ("alerts.yml", "alerts_test.yml"):
        shutil.copy(DEPLOY / "prometheus" / name, tmp_path / name)
    res = subprocess.run(
        [promtool, "test", "rules", "alerts_test.yml"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert res.returncode == 0, res.stdout + res.stderr
    assert "SUCCESS" in res.stdout + res.stderr


# -- the store: one PostgreSQL every evaluator writes ---------------------------------------------


def store_arg(args: list[str]) -> str:
    value = option(args, "--store")
    assert value is not None, f"{args[0]}: no --store"
    return value


def test_compose_evaluators_write_one_postgres_store() -> None:
    services = compose()["services"]
    pg = services["postgres"]
    assert pg["image"].split(":")[0] == "postgres"
    assert "pg_isready" in pg["healthcheck"]["test"]
    data = [v for v in pg["volumes"] if v.endswith(":/var/lib/postgresql/data")]
    assert data and data[0].split(":")[0] in compose()["volumes"]  # a named volume
    # the URL names the service, its user and database, and no password (PGPASSWORD)
    migrate = services["store-migrate"]
    url = store_arg(migrate["command"])
    assert migrate["command"][:2] == ["store", "migrate"]
    assert store_path(url) is None  # the project reads it as a PostgreSQL URL
    parts = urllib.parse.urlsplit(url)
    assert parts.password is None and parts.hostname == "postgres"
    assert parts.username == pg["environment"]["POSTGRES_USER"]
    assert parts.path == "/" + pg["environment"]["POSTGRES_DB"]
    assert str(pg["environment"]["POSTGRES_PASSWORD"]).startswith("${QA_STORE_PASSWORD:?")
    assert migrate["depends_on"] == {"postgres": {"condition": "service_healthy"}}
    # the writers, and the dashboard whose history pages read what they wrote
    users = [n for n, s in qa_services().items() if "--store" in s["command"]]
    assert sorted(users) == ["dashboard", "evaluate", "store-migrate"]
    for name in ("evaluate", "dashboard"):
        svc = services[name]
        assert store_arg(svc["command"]) == url, name
        assert svc["environment"]["PGPASSWORD"] == pg["environment"]["POSTGRES_PASSWORD"]
        assert svc["depends_on"]["store-migrate"] == {"condition": "service_completed_successfully"}
        assert svc["depends_on"]["kafka-init"] == {"condition": "service_completed_successfully"}
    assert migrate["environment"]["PGPASSWORD"] == pg["environment"]["POSTGRES_PASSWORD"]
    # the stages that use no store get no store password
    for name, svc in qa_services().items():
        if name not in users:
            assert "PGPASSWORD" not in svc.get("environment", {}), name


def test_k8s_store_url_comes_from_a_secret() -> None:
    """Every evaluator (and the dashboard, for its history pages) gets --store from the
    Secret qa-store (never a ConfigMap); an init container of the evaluators' image
    migrates that store first."""
    for o in k8s_objects():
        if o["kind"] == "ConfigMap":
            assert "postgresql://" not in json.dumps(o), o["metadata"]["name"]
    users = [(o, c) for o, c in k8s_containers() if "--store" in c["args"]]
    assert sorted(c["args"][0] for _, c in users) == ["dashboard", "evaluate"]
    for obj, c in users:
        env = {e["name"]: e for e in c["env"]}
        url_ref = store_arg([str(a) for a in c["args"]])
        ref = re.fullmatch(r"\$\((\w+)\)", url_ref)
        assert ref is not None, url_ref
        name = ref.group(1)
        assert env[name]["valueFrom"]["secretKeyRef"] == {"name": "qa-store", "key": "url"}
        assert env["PGPASSWORD"]["valueFrom"]["secretKeyRef"]["name"] == "qa-store"
        if c["args"][0] == "dashboard":
            continue
        (init,) = obj["spec"]["template"]["spec"]["initContainers"]
        assert init["image"] == c["image"]
        assert [str(a) for a in init["args"]][:2] == ["store", "migrate"]
        assert store_arg(init["args"]) == url_ref
        init_env = {e["name"]: e for e in init["env"]}
        for n in (name, "PGPASSWORD"):
            assert init_env[n]["valueFrom"] == env[n]["valueFrom"], n
    # the example Secret has those keys; its URL carries no password
    (secret,) = [
        o for o in yaml_docs(K8S / "secret.example.yaml") if o["metadata"]["name"] == "qa-store"
    ]
    assert set(secret["stringData"]) == {"url", "password"}
    parts = urllib.parse.urlsplit(secret["stringData"]["url"])
    assert parts.scheme == "postgresql" and parts.password is None
    # PostgreSQL itself is not part of the kit: the trial StatefulSet is labelled and left
    # out of kustomization.yaml
    kust = yaml_docs(K8S / "kustomization.yaml")[0]
    assert all((K8S / r).is_file() for r in kust["resources"])
    assert "postgres-trial.yaml" not in kust["resources"]
    assert "secret.example.yaml" not in kust["resources"]
    trial = yaml_docs(K8S / "postgres-trial.yaml")
    (sts,) = [o for o in trial if o["kind"] == "StatefulSet"]
    assert sts["spec"]["replicas"] == 1
    assert all(o["metadata"]["labels"]["qa-pipeline/trial-only"] == "true" for o in trial)


def test_the_kit_s_migrate_step_migrates_a_fresh_database(pg_server: Any) -> None:
    """The compose one-shot's own command, pointed at a real PostgreSQL (Debian's 15) as a
    role that owns its database and is no superuser (as on a managed service), applies
    every migration; a second run finds the store up to date."""
    import uuid

    import psycopg
    from typer.testing import CliRunner

    from qa_pipeline.store.migrate import migrations

    args = [str(a) for a in compose()["services"]["store-migrate"]["command"]]
    kit_url = urllib.parse.urlsplit(store_arg(args))
    admin_url = urllib.parse.urlsplit(pg_server())
    suffix = uuid.uuid4().hex[:10]
    role, db = f"qa_kit_{suffix}", f"qa_kit_{suffix}"
    with psycopg.connect(pg_server(), autocommit=True) as admin:
        admin.execute(f"CREATE ROLE {role} LOGIN NOSUPERUSER NOCREATEDB NOCREATEROLE")
        admin.execute(f"CREATE DATABASE {db} OWNER {role}")
    try:
        url = kit_url._replace(
            netloc=f"{role}@{admin_url.hostname}:{admin_url.port}", path=f"/{db}"
        ).geturl()
        args[args.index("--store") + 1] = url
        runner = CliRunner()
        first = runner.invoke(app, args)
        assert first.exit_code == 0, first.output
        with psycopg.connect(url) as conn:
            done = {r[0] for r in conn.execute("SELECT version FROM schema_migrations")}
        assert done == {m.version for m in migrations("postgres")}
        again = runner.invoke(app, args)
        assert again.exit_code == 0 and "up to date" in again.output, again.output
    finally:
        with psycopg.connect(pg_server(), autocommit=True) as admin:
            admin.execute(f"DROP DATABASE IF EXISTS {db} WITH (FORCE)")
            admin.execute(f"DROP ROLE IF EXISTS {role}")
