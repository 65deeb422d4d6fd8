from __future__ import annotations

import pkgutil
import subprocess
import sys
from pathlib import Path

import pipeline
from pipeline.settings import PROJECT_ROOT


def test_pipeline_imports_no_ray() -> None:
    """pipeline/ is the pure core: importing every module of it must not load Ray (serve/ and train/ may)."""
    modules = [m.name for m in pkgutil.walk_packages(pipeline.__path__, prefix="pipeline.")]
    assert "pipeline.ranking.predict" in modules and "pipeline.adapters.kv" in modules
    code = "import sys\n" + "".join(f"import {m}\n" for m in modules) + "print('ray' in sys.modules)"
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert result.stdout.strip() == "False"


def test_import_layers_hold() -> None:
    """The contracts in pyproject.toml ([tool.importlinter]): ops over serve | train over pipeline; inside the
    core, adapters over the logic; the core without Ray. A broken contract prints the offending imports."""
    lint = Path(sys.executable).with_name("lint-imports")
    result = subprocess.run([str(lint)], capture_output=True, text=True, cwd=PROJECT_ROOT)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "4 kept, 0 broken" in result.stdout


def test_rayservice_serves_the_prod_config() -> None:
    """k8s/rayservice.yaml inlines configs/serve.prod.yaml (KubeRay needs it inline): they must not drift."""
    import yaml

    service = yaml.safe_load((PROJECT_ROOT / "k8s" / "rayservice.yaml").read_text())
    prod = yaml.safe_load((PROJECT_ROOT / "configs" / "serve.prod.yaml").read_text())
    assert yaml.safe_load(service["spec"]["serveConfigV2"]) == prod


def test_serve_configs_validate() -> None:
    """Both Serve configs parse with Serve's own schema and our app arguments."""
    import yaml
    from ray.serve.schema import ServeDeploySchema

    from pipeline.settings import load_settings
    from serve.app import AppArgs

    for name in ("serve.local.yaml", "serve.prod.yaml"):
        config = ServeDeploySchema.model_validate(yaml.safe_load((PROJECT_ROOT / "configs" / name).read_text()))
        args = AppArgs.model_validate(config.applications[0].args)
        load_settings(overrides=args.settings)
        names = {d.name for d in config.applications[0].deployments}
        assert names == {"Ingress", "SpecStore", "Embedder", "Ranker", "LearningLoop", "CandidateGenerator"}
