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
    result = subprocess.run([str(lint)], capture_output=True, text=True, cwd=PROJECT_ROOT, check=False)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "4 kept, 0 broken" in result.stdout


def test_the_kuberay_manifests_inline_the_prod_configs() -> None:
    """KubeRay needs the Serve config inline: k8s/base inlines configs/serve.prod.yaml and the gpu overlay's patch
    configs/serve.prod-gpu.yaml, verbatim (tests/ops/test_k8s.py checks the rendered overlays too)."""
    import yaml

    for manifest, config in [("base/rayservice.yaml", "serve.prod.yaml"),
                             ("overlays/gpu/serve-config-gpu.yaml", "serve.prod-gpu.yaml")]:
        service = yaml.safe_load((PROJECT_ROOT / "k8s" / manifest).read_text())
        assert service["spec"]["serveConfigV2"] == (PROJECT_ROOT / "configs" / config).read_text(), manifest


def test_serve_configs_validate() -> None:
    """Every Serve config parses with Serve's own schema and our app arguments, over its settings file."""
    import yaml
    from ray.serve.schema import ServeDeploySchema

    from pipeline.settings import load_settings
    from serve.app import AppArgs

    configs = PROJECT_ROOT / "configs"
    for name, base, generator in [("serve.local.yaml", "opensesame.yaml", True),
                                  ("serve.prod.yaml", "opensesame.k8s.yaml", False),
                                  ("serve.prod-gpu.yaml", "opensesame.k8s.yaml", True)]:
        config = ServeDeploySchema.model_validate(yaml.safe_load((configs / name).read_text()))
        args = AppArgs.model_validate(config.applications[0].args)
        load_settings(configs / base, overrides=args.settings)
        names = {d.name for d in config.applications[0].deployments}
        assert names == {"Ingress", "SpecStore", "Embedder", "Ranker", "LearningLoop"} | (
            {"CandidateGenerator"} if generator else set()), name
        assert args.llm is generator, name
