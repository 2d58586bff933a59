"""Static checks of the deployment files under docker/: compose, Prometheus, nginx, Grafana, Kubernetes
and the Dockerfile. They parse the files and check the fields the stack relies on (service names that
must agree across files, probes, GPU reservation, DNS discovery, dashboard metrics); no Docker needed.
`docker/smoke.sh` runs the real stack.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import tomllib
from pathlib import Path
from typing import Any

import pytest
import yaml

DOCKER = Path(__file__).resolve().parents[2] / "docker"
SERVICE = "fstcn"
PORT = 8000
# docs/design.md, "Metrics": the metrics the service exports (dashboard queries may use only these).
EXPORTED_METRICS = {
    "fstcn_requests_total",
    "fstcn_request_duration_seconds",
    "fstcn_stage_duration_seconds",
    "fstcn_inflight_requests",
    "fstcn_queue_depth",
    "fstcn_batch_size",
    "fstcn_errors_total",
    "fstcn_video_duration_seconds",
    "fstcn_model_info",
}


def load_yaml(name: str) -> Any:
    with open(DOCKER / name) as stream:
        return yaml.safe_load(stream)


def load_all_yaml(name: str) -> list[Any]:
    with open(DOCKER / name) as stream:
        return [doc for doc in yaml.safe_load_all(stream) if doc is not None]


# ---------------------------------------------------------------------------------------------- compose


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    config: dict[str, Any] = load_yaml("docker-compose.yml")
    return config


def test_compose_has_the_four_services_on_one_network(compose: dict[str, Any]) -> None:
    assert "version" not in compose, "no version key: the Compose spec, read by compose v2 and v1 >= 1.28"
    services = compose["services"]
    assert set(services) == {SERVICE, "nginx", "prometheus", "grafana"}
    for name, service in services.items():
        assert service["networks"] == [SERVICE], name
        assert "healthcheck" in service, f"{name} has no healthcheck"


def test_compose_service_is_scalable_and_builds_the_serve_target(compose: dict[str, Any]) -> None:
    service = compose["services"][SERVICE]
    # A fixed name or a published port would make `--scale fstcn=N` fail.
    assert "container_name" not in service
    assert "ports" not in service
    assert service["build"]["target"] == "serve"
    assert service["build"]["dockerfile"] == "docker/Dockerfile"
    assert (DOCKER / service["build"]["context"] / service["build"]["dockerfile"]).is_file()
    assert "BASE_IMAGE" in service["build"]["args"]
    assert service["image"].startswith("${FSTCN_IMAGE:-")


def test_compose_service_healthcheck_uses_readiness(compose: dict[str, Any]) -> None:
    test = " ".join(compose["services"][SERVICE]["healthcheck"]["test"])
    assert f"127.0.0.1:{PORT}/readyz" in test


def test_compose_custom_model_volume_and_path(compose: dict[str, Any]) -> None:
    service = compose["services"][SERVICE]
    assert "${FSTCN_MODEL_DIR:-../models}:/models:ro" in service["volumes"]
    assert service["environment"]["FSTCN_MODEL_PATH"] == "/models/${FSTCN_MODEL_FILE:-fstcn-small.onnx}"
    assert (DOCKER / ".." / "models").is_dir()


def test_compose_other_images_are_overridable(compose: dict[str, Any]) -> None:
    services = compose["services"]
    assert services["prometheus"]["image"].startswith("${PROMETHEUS_IMAGE:-prom/prometheus:")
    assert services["grafana"]["image"].startswith("${GRAFANA_IMAGE:-grafana/grafana:")
    assert services["nginx"]["image"].startswith("${NGINX_IMAGE:-nginx:")


def test_compose_mounts_exist(compose: dict[str, Any]) -> None:
    for name in ("nginx", "prometheus", "grafana"):
        for volume in compose["services"][name]["volumes"]:
            source = volume.split(":")[0]
            if source.startswith("./"):
                assert (DOCKER / source).exists(), f"{name}: {source} does not exist"


def test_gpu_override_reserves_nvidia_gpus() -> None:
    override = load_yaml("docker-compose.override.yml")
    devices = override["services"][SERVICE]["deploy"]["resources"]["reservations"]["devices"]
    assert devices == [{"driver": "nvidia", "count": "${FSTCN_GPU_COUNT:-all}", "capabilities": ["gpu"]}]


def test_cpu_override_reserves_nothing() -> None:
    cpu = load_yaml("docker-compose.cpu.yml")
    service = cpu["services"][SERVICE]
    assert "deploy" not in service
    assert service["environment"]["FSTCN_PROVIDERS"] == "${FSTCN_PROVIDERS:-cpu}"


@pytest.mark.parametrize(
    "files",
    [
        ["docker-compose.yml", "docker-compose.override.yml"],
        ["docker-compose.yml", "docker-compose.cpu.yml"],
    ],
)
def test_docker_compose_v1_accepts_the_files(files: list[str]) -> None:
    if shutil.which("docker-compose") is None:
        pytest.skip("docker-compose (v1) is not installed; docker/smoke.sh installs it")
    args = ["docker-compose", "--project-directory", str(DOCKER)]
    for name in files:
        args += ["-f", str(DOCKER / name)]
    result = subprocess.run([*args, "config", "-q"], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr


# ---------------------------------------------------------------------------------------------- prometheus


def test_prometheus_discovers_every_replica_by_dns() -> None:
    config = load_yaml("prometheus.yml")
    jobs = {job["job_name"]: job for job in config["scrape_configs"]}
    job = jobs[SERVICE]
    assert job.get("metrics_path", "/metrics") == "/metrics"
    assert "static_configs" not in job, "a static target would scrape one replica only"
    (sd,) = job["dns_sd_configs"]
    assert sd["names"] == [SERVICE]
    assert sd["type"] == "A"
    assert sd["port"] == PORT


def test_promtool_accepts_the_config(tmp_path: Path) -> None:
    if shutil.which("promtool") is None:
        pytest.skip("promtool is not installed (Debian package prometheus)")
    result = subprocess.run(
        ["promtool", "check", "config", str(DOCKER / "prometheus.yml")], capture_output=True, text=True
    )
    assert result.returncode == 0, result.stdout + result.stderr


# ---------------------------------------------------------------------------------------------- nginx


def test_nginx_re_resolves_the_service_name() -> None:
    conf = re.sub(r"#.*", "", (DOCKER / "nginx.conf").read_text())
    assert re.search(r"^\s*resolver 127\.0\.0\.11 valid=\d+s", conf, re.M), "Docker DNS with a short TTL"
    # proxy_pass through a variable: resolved per request, so new replicas are picked up.
    assert re.search(rf"set \$(\w+) {SERVICE}:{PORT};", conf)
    variable = re.search(rf"set \$(\w+) {SERVICE}:{PORT};", conf).group(1)  # type: ignore[union-attr]
    assert f"proxy_pass http://${variable};" in conf
    assert re.search(r"^\s*listen 8000;", conf, re.M)
    assert not re.search(r"^\s*upstream\s", conf, re.M), "a static upstream block is resolved once"


def test_nginx_syntax_if_available(tmp_path: Path) -> None:
    nginx = shutil.which("nginx") or ("/usr/sbin/nginx" if Path("/usr/sbin/nginx").exists() else None)
    if nginx is None:
        pytest.skip("nginx is not installed")
    conf = (DOCKER / "nginx.conf").read_text().replace("resolver 127.0.0.11", "resolver 127.0.0.1")
    path = tmp_path / "nginx.conf"
    path.write_text(conf)
    result = subprocess.run([nginx, "-t", "-c", str(path)], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr


# ---------------------------------------------------------------------------------------------- grafana


def test_grafana_datasource_points_at_prometheus() -> None:
    config = load_yaml("grafana/provisioning/datasources/prometheus.yml")
    (source,) = config["datasources"]
    assert source["type"] == "prometheus"
    assert source["url"] == "http://prometheus:9090"
    provider = load_yaml("grafana/provisioning/dashboards/fstcn.yml")["providers"][0]
    assert provider["options"]["path"] == "/etc/grafana/dashboards"


def test_grafana_dashboard_covers_the_required_panels() -> None:
    dashboard = json.loads((DOCKER / "grafana/dashboards/fstcn.json").read_text())
    datasource_uid = load_yaml("grafana/provisioning/datasources/prometheus.yml")["datasources"][0]["uid"]
    panels = dashboard["panels"]
    assert len({panel["id"] for panel in panels}) == len(panels)
    exprs = [target["expr"] for panel in panels for target in panel["targets"]]
    for panel in panels:
        assert panel["datasource"]["uid"] == datasource_uid, panel["title"]
    # Every fstcn_ series named in a query is one the service exports (docs/design.md, "Metrics"),
    # histograms by suffix.
    for name in re.findall(r"\b(fstcn_\w+)", " ".join(exprs)):
        base = re.sub(r"_(bucket|sum|count)$", "", name)
        assert base in EXPORTED_METRICS, f"dashboard uses unknown metric {name}"

    def has(pattern: str) -> bool:
        return any(re.search(pattern, expr) for expr in exprs)

    assert has(r"rate\(fstcn_requests_total"), "request rate"
    assert has(r"sum by \(code\) \(rate\(fstcn_errors_total"), "error rate by code"
    stage_p95 = r"histogram_quantile\(0\.95, sum by \(le, stage\) \(rate\(fstcn_stage_duration_seconds_bucket"
    assert has(stage_p95), "latency quantiles by stage"
    assert has(r"fstcn_queue_depth"), "queue depth"
    assert has(r"fstcn_batch_size_bucket"), "batch size"


# ---------------------------------------------------------------------------------------------- kubernetes


@pytest.fixture(scope="module")
def k8s() -> dict[str, dict[str, Any]]:
    docs: dict[str, dict[str, Any]] = {}
    for path in sorted((DOCKER / "k8s").glob("*.yaml")):
        for doc in load_all_yaml(f"k8s/{path.name}"):
            assert {"apiVersion", "kind"} <= set(doc), path.name
            if doc["kind"] != "Kustomization":
                assert doc["metadata"]["name"], path.name
            docs[doc["kind"]] = doc
    return docs


def test_k8s_has_deployment_service_and_hpa(k8s: dict[str, dict[str, Any]]) -> None:
    assert {"Deployment", "Service", "HorizontalPodAutoscaler"} <= set(k8s)
    kustomization = k8s.get("Kustomization")
    if kustomization is not None:
        for resource in kustomization["resources"]:
            assert (DOCKER / "k8s" / resource).is_file()


def test_k8s_deployment_probes_and_security(k8s: dict[str, dict[str, Any]]) -> None:
    deployment = k8s["Deployment"]
    assert deployment["apiVersion"] == "apps/v1"
    spec = deployment["spec"]
    labels = spec["template"]["metadata"]["labels"]
    assert spec["selector"]["matchLabels"].items() <= labels.items()
    (container,) = spec["template"]["spec"]["containers"]
    port_names = {port["name"]: port["containerPort"] for port in container["ports"]}
    assert port_names["http"] == PORT
    for probe, path in (("livenessProbe", "/v2/health/live"), ("readinessProbe", "/v2/health/ready")):
        get = container[probe]["httpGet"]
        assert get["path"] == path, probe
        assert get["port"] in ("http", PORT), probe
    assert container["startupProbe"]["httpGet"]["path"] == "/v2/health/ready"
    # The HPA's CPU utilisation is relative to the request: it must exist.
    assert "cpu" in container["resources"]["requests"]
    assert spec["template"]["spec"]["securityContext"]["runAsNonRoot"] is True


def test_k8s_service_selects_the_pods(k8s: dict[str, dict[str, Any]]) -> None:
    service = k8s["Service"]
    labels = k8s["Deployment"]["spec"]["template"]["metadata"]["labels"]
    assert service["spec"]["selector"].items() <= labels.items()
    (port,) = service["spec"]["ports"]
    assert port["targetPort"] in ("http", PORT)


def test_k8s_hpa_targets_the_deployment(k8s: dict[str, dict[str, Any]]) -> None:
    hpa = k8s["HorizontalPodAutoscaler"]
    assert hpa["apiVersion"] == "autoscaling/v2"
    target = hpa["spec"]["scaleTargetRef"]
    assert (target["apiVersion"], target["kind"], target["name"]) == (
        "apps/v1",
        "Deployment",
        k8s["Deployment"]["metadata"]["name"],
    )
    assert 1 <= hpa["spec"]["minReplicas"] <= hpa["spec"]["maxReplicas"]
    assert hpa["spec"]["metrics"]


# ---------------------------------------------------------------------------------------------- Dockerfile


def dockerfile_stages() -> dict[str, str]:
    """Stage name -> its instructions (text up to the next FROM)."""
    text = (DOCKER / "Dockerfile").read_text()
    parts = re.split(r"^FROM\s+", text, flags=re.M)
    stages = {}
    for part in parts[1:]:
        header = part.splitlines()[0]
        match = re.search(r"\bAS\s+(\S+)", header, re.I)
        assert match, f"unnamed stage: FROM {header}"
        stages[match.group(1)] = "FROM " + part
    return stages


def test_dockerfile_serve_and_train_targets() -> None:
    text = (DOCKER / "Dockerfile").read_text()
    assert re.search(r"^ARG BASE_IMAGE=", text, re.M)
    stages = dockerfile_stages()
    assert {"serve", "train"} <= set(stages)
    names = list(stages)
    # The legacy builder builds every stage before the target: serve must not come after train's.
    assert names.index("serve") < names.index("train-deps") < names.index("train")
    serve = stages["serve"]
    assert re.search(r"^USER (?!root\b|0\b)\S+", serve, re.M), "serve runs as a non-root user"
    assert re.search(r"^HEALTHCHECK .*\n?.*?/readyz", serve, re.M | re.S)
    assert re.search(r"^CMD \[\"fstcn\", \"serve\"", serve, re.M)
    assert "EXPOSE 8000" in serve
    # the shipped model: package data of fstcn.models, where FSTCN_MODEL_PATH's default points
    assert re.search(r"^COPY models/ /src/models/$", stages["source"], re.M), "the shipped model is built in"
    assert "FSTCN_MODEL_PATH=/app/models/fstcn-small.onnx" in serve
    assert re.search(r"ln -s .*BUNDLE_DIR.* /app/models", serve), "/app/models is the installed bundle"


def mapped_folders() -> list[str]:
    """The folders pyproject.toml maps into the `fstcn` namespace (its [tool.setuptools] package-dir)."""
    pyproject = tomllib.loads((DOCKER.parent / "pyproject.toml").read_text())
    return sorted(set(pyproject["tool"]["setuptools"]["package-dir"].values()))


def test_dockerfile_installs_every_folder_of_the_namespace() -> None:
    """A folder left out of the build would make the image's `pip install` fail (a listed package with
    no folder) or, for package data, ship an image without its model."""
    stages = dockerfile_stages()
    missing = [
        folder
        for folder in mapped_folders()
        if not re.search(rf"^COPY {re.escape(folder)}/ /src/{re.escape(folder)}/$", stages["source"], re.M)
    ]
    assert missing == []
    for stage in ("serve", "train"):
        assert re.search(r"^COPY --from=source /src /src$", stages[stage], re.M), stage


def test_dockerfile_serving_stages_have_no_torch_but_ort_gpu_with_cuda_libs() -> None:
    stages = dockerfile_stages()
    serving = stages["python-base"] + stages["serve-deps"] + stages["serve"]
    serving = re.sub(r"^#.*\n", "", serving, flags=re.M)
    assert "torch" not in re.sub(r"find_spec\(\"torch\"\) is None|must not contain torch", "", serving)
    assert re.search(r'ARG ORT_GPU_SPEC="onnxruntime-gpu\[cuda,cudnn\]==', serving)
    assert "ld.so.conf.d" in stages["serve"], "the pip CUDA libraries are registered with the loader"
    assert re.search(r"TORCH_SPEC=\"torch==", stages["train-deps"])


def test_dockerfile_extra_ca_input_and_dockerignore() -> None:
    text = (DOCKER / "Dockerfile").read_text()
    assert "COPY docker/certs/ " in text
    assert "PIP_CERT=" in text
    assert (DOCKER / "certs" / "README.md").is_file()
    ignore = (DOCKER.parent / ".dockerignore").read_text().splitlines()
    assert ignore[ignore.index("*") :], "allow-list .dockerignore"
    for needed in ("pyproject.toml", "docker/certs/", *(f"{folder}/" for folder in mapped_folders())):
        assert f"!{needed}" in ignore, needed
