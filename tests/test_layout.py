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
