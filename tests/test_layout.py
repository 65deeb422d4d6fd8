from __future__ import annotations

import pkgutil
import subprocess
import sys

import pipeline


def test_pipeline_imports_no_ray() -> None:
    """pipeline/ is the pure core: importing every module of it must not load Ray (serve/ and train/ may)."""
    modules = [f"pipeline.{m.name}" for m in pkgutil.iter_modules(pipeline.__path__)]
    code = "import sys\n" + "".join(f"import {m}\n" for m in modules) + "print('ray' in sys.modules)"
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert result.stdout.strip() == "False"


def test_rayservice_serves_the_prod_config() -> None:
    """k8s/rayservice.yaml inlines configs/serve.prod.yaml (KubeRay needs it inline): they must not drift."""
    import yaml

    from pipeline.settings import PROJECT_ROOT

    service = yaml.safe_load((PROJECT_ROOT / "k8s" / "rayservice.yaml").read_text())
    prod = yaml.safe_load((PROJECT_ROOT / "configs" / "serve.prod.yaml").read_text())
    assert yaml.safe_load(service["spec"]["serveConfigV2"]) == prod


def test_serve_configs_validate() -> None:
    """Both Serve configs parse with Serve's own schema and our app arguments."""
    import yaml
    from ray.serve.schema import ServeDeploySchema

    from pipeline.settings import PROJECT_ROOT, load_settings
    from serve.app import AppArgs

    for name in ("serve.local.yaml", "serve.prod.yaml"):
        config = ServeDeploySchema.model_validate(yaml.safe_load((PROJECT_ROOT / "configs" / name).read_text()))
        args = AppArgs.model_validate(config.applications[0].args)
        load_settings(overrides=args.settings)
        names = {d.name for d in config.applications[0].deployments}
        assert names == {"Ingress", "SpecStore", "Embedder", "Ranker", "LearningLoop", "CandidateGenerator"}
