"""Loading causal LMs and tokenizers: device and dtype choice, optional LoRA, gradient checkpointing.

Works for local checkpoints and hub ids alike (hub ids need network access, which tests never use).
ChatGLM3 checkpoints ship their own modelling code: pass ``trust_remote_code=True`` to run it.

A model that is neither a local folder nor loadable as a hub id is a one-line :class:`UserError` naming
the config key (``model=...``), not transformers' traceback. transformers' load reports (the "LOAD REPORT"
table, "Some weights of ... were not initialized") are silenced while loading; set
``CHATGLM_RLHF_VERBOSE=1`` (or transformers' own ``TRANSFORMERS_VERBOSITY``) to see them.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import torch
import transformers
from packaging.version import Version
from transformers import AutoModelForCausalLM, AutoTokenizer

from chatglm_rlhf.errors import ConfigError, CorruptFileError, UserError
from chatglm_rlhf.utils.console import VERBOSE_ENV
from chatglm_rlhf.utils.files import check_model_files

_DTYPES = {
    "fp32": torch.float32,
    "float32": torch.float32,
    "bf16": torch.bfloat16,
    "bfloat16": torch.bfloat16,
    "fp16": torch.float16,
    "float16": torch.float16,
    "half": torch.float16,
}


def _mps_available() -> bool:
    mps = getattr(torch.backends, "mps", None)
    return bool(mps and mps.is_available())


def pick_device(preference: str = "auto") -> torch.device:
    """``auto``: cuda, else mps, else cpu. An explicit device ("cpu", "cuda", "cuda:1") must exist."""
    pref = str(preference).strip().lower()
    if pref == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        return torch.device("mps") if _mps_available() else torch.device("cpu")
    try:
        device = torch.device(pref)
    except RuntimeError as e:
        raise ConfigError(f"device: {preference!r} is not a device (try auto, cpu, cuda, cuda:1, mps)") from e
    # Fail here with a clear message rather than deep inside .to() later.
    if device.type == "cuda":
        count = torch.cuda.device_count() if torch.cuda.is_available() else 0
        if (device.index or 0) >= count:
            raise ConfigError(f"device: {preference!r} requested but this machine has {count} CUDA device(s)")
    if device.type == "mps" and not _mps_available():
        raise ConfigError("device: 'mps' requested but MPS is not available")
    return device


def _cuda_bf16(device: torch.device) -> bool:
    # including_emulation=False: GPUs that only emulate bf16 (pre-Ampere) are slow with it; use fp16 there.
    try:
        return torch.cuda.is_bf16_supported(including_emulation=False)
    except TypeError:  # older torch without the argument
        return torch.cuda.is_bf16_supported()


def pick_dtype(device: torch.device | str, preference: str | torch.dtype = "auto") -> torch.dtype:
    """``auto``: bf16 on CUDA with native bf16, fp16 on other CUDA GPUs, fp32 on CPU and MPS.

    CPU never defaults to bf16 (slow matmuls there); MPS stays fp32 because fp16 training without a loss
    scaler is unstable. Explicit "fp32"/"bf16"/"fp16" (or a ``torch.dtype``) are honoured.
    """
    if isinstance(preference, torch.dtype):
        return preference
    pref = str(preference).strip().lower()
    if pref in _DTYPES:
        return _DTYPES[pref]
    if pref != "auto":
        raise ConfigError(f"dtype: {preference!r} is not one of auto, fp32, bf16, fp16")
    if torch.device(device).type == "cuda":
        return torch.bfloat16 if _cuda_bf16(torch.device(device)) else torch.float16
    return torch.float32


# A hub repository id: "name" or "owner/name" (letters, digits, - _ .), no path syntax.
_HUB_ID = re.compile(r"^[A-Za-z0-9][\w.-]*(/[\w.-]+)?$")


def is_hub_id(name: str) -> bool:
    return bool(_HUB_ID.match(name)) and ".." not in name and not name.endswith((".json", ".jsonl", ".bin"))


@contextmanager
def quiet_transformers() -> Iterator[None]:
    """transformers logs errors only inside (its multi-line load reports are warnings).

    ``CHATGLM_RLHF_VERBOSE=1`` or a ``TRANSFORMERS_VERBOSITY`` the user set keeps its logging as it is.
    """
    from transformers.utils import logging as hf_logging

    if os.environ.get(VERBOSE_ENV, "") not in ("", "0") or os.environ.get("TRANSFORMERS_VERBOSITY"):
        yield
        return
    level = hf_logging.get_verbosity()
    hf_logging.set_verbosity_error()
    try:
        yield
    finally:
        hf_logging.set_verbosity(level)


# What a folder from save_pretrained holds: a model's config, or a tokenizer saved on its own.
CHECKPOINT_FILES = ("config.json", "tokenizer_config.json", "tokenizer.json")
REDO_MODEL = "save the model again (in a pipeline run: rerun with --from the stage that wrote it)"


@contextmanager
def model_source(name_or_path: str, key: str = "model") -> Iterator[None]:
    """Check ``name_or_path`` (a local folder or a hub id) and turn a failed load into one line.

    A path that does not exist and cannot be a hub id fails here, before transformers; a hub id that
    cannot be loaded (offline, unknown) fails with transformers' first line of explanation.
    """
    name = str(name_or_path)
    if not name:
        raise UserError(f"{key}=... is required (a local folder or a hub id)")
    local = Path(name).expanduser()
    if not local.exists() and not is_hub_id(name):
        raise UserError(f"{key}={name}: no such folder (and not a hub id like owner/name)")
    if local.is_file() and not local.suffix == ".gguf":
        raise UserError(f"{key}={name}: a file, expected a model folder (from save_pretrained) or a hub id")
    if local.is_dir() and not any((local / f).is_file() for f in CHECKPOINT_FILES):
        # Else transformers guesses a tokenizer class and fails deep inside it (sentencepiece, tiktoken).
        raise UserError(f"{key}={name}: not a checkpoint folder (no config.json)")
    if local.is_dir():  # a truncated weights file: a clear line here, not safetensors' error mid-load
        try:
            check_model_files(local)
        except CorruptFileError as e:
            raise CorruptFileError(e.path, f"{key}={name}: {e.message}", REDO_MODEL) from None
    try:
        with quiet_transformers():
            yield
    except (OSError, ValueError) as e:
        if local.exists():
            raise
        text = str(e).strip()
        first = text.splitlines()[0] if text else type(e).__name__
        raise UserError(
            f"{key}={name}: not a local folder, and loading it as a hub id failed: {first}"
        ) from None


def load_tokenizer(
    name_or_path: str, trust_remote_code: bool = False, padding_side: str = "left", key: str = "model"
):
    """``AutoTokenizer`` with left padding (what batched generation needs).

    Tokenizers without a pad token get ``pad_token = eos_token``: padded positions are masked by the
    attention mask and the labels, so sharing the id with eos is harmless. ``key`` names the config
    key the path came from, for the error when it does not load.
    """
    with model_source(name_or_path, key):
        tokenizer = AutoTokenizer.from_pretrained(
            name_or_path, trust_remote_code=trust_remote_code, padding_side=padding_side
        )
    if tokenizer.pad_token is None and tokenizer.eos_token is not None:
        tokenizer.pad_token = tokenizer.eos_token
    return tokenizer


@dataclass
class LoraSettings:
    r: int = 8
    alpha: int = 16
    dropout: float = 0.0
    target_modules: list[str] | None = None  # None: every linear layer except the output head

    def to_peft(self):
        from peft import LoraConfig, TaskType

        return LoraConfig(
            r=self.r,
            lora_alpha=self.alpha,
            lora_dropout=self.dropout,
            target_modules=self.target_modules or "all-linear",
            task_type=TaskType.CAUSAL_LM,
        )


def _dtype_kwarg() -> str:
    # transformers 4.56 renamed from_pretrained's ``torch_dtype`` to ``dtype`` (5.x warns on the old name).
    return "dtype" if Version(transformers.__version__) >= Version("4.56") else "torch_dtype"


def _enable_checkpointing(model) -> None:
    # Non-reentrant checkpointing also works when the inputs need no grad (frozen embeddings + LoRA).
    kwargs = {"use_reentrant": False}
    if hasattr(model, "activation_checkpointing_enable"):  # transformers >= 5.x; the old name warns there
        model.activation_checkpointing_enable(activation_checkpointing_kwargs=kwargs)
    else:
        model.gradient_checkpointing_enable(gradient_checkpointing_kwargs=kwargs)
    model.config.use_cache = False  # the KV cache is useless when recomputing activations


def load_causal_lm(
    name_or_path: str,
    dtype: str | torch.dtype = "auto",
    device: str = "auto",
    trust_remote_code: bool = False,
    lora: LoraSettings | None = None,
    gguf_file: str | None = None,
    gradient_checkpointing: bool = False,
    key: str = "model",
):
    """``AutoModelForCausalLM.from_pretrained`` on the chosen device and dtype, optionally with LoRA.

    With ``lora`` the result is a peft model whose only trainable parameters are the adapters. The model
    comes back in eval mode (as from_pretrained leaves it); trainers switch to train mode themselves.
    """
    dev = pick_device(device)
    kwargs = {_dtype_kwarg(): pick_dtype(dev, dtype), "trust_remote_code": trust_remote_code}
    if gguf_file:
        kwargs["gguf_file"] = gguf_file  # dequantised on load; needs the ``gguf`` package
    with model_source(name_or_path, key):
        model = AutoModelForCausalLM.from_pretrained(name_or_path, **kwargs)
    model = model.to(dev)
    if gradient_checkpointing:
        _enable_checkpointing(model)
    if lora is not None:
        from peft import get_peft_model

        model = get_peft_model(model, lora.to_peft())
    return model


def describe_model(model) -> str:
    """One log line: class, parameter counts, dtype(s) and device(s)."""
    params = list(model.parameters())
    total = sum(p.numel() for p in params)
    trainable = sum(p.numel() for p in params if p.requires_grad)
    dtypes = ",".join(sorted({str(p.dtype).replace("torch.", "") for p in params})) or "-"
    devices = ",".join(sorted({str(p.device) for p in params})) or "-"
    pct = 100.0 * trainable / total if total else 0.0
    return (
        f"{type(model).__name__}: {total:,} params, {trainable:,} trainable ({pct:.2f}%), "
        f"dtype {dtypes}, device {devices}"
    )


def load_for_training(
    name_or_path: str,
    stage: str,
    trust_remote_code: bool = False,
    lora_r: int = 0,
    lora_alpha: int = 16,
    gradient_checkpointing: bool = False,
):
    """(model, tokenizer) for a trainer: fp32 weights on CPU, LoRA when ``lora_r > 0``.

    Weights stay fp32; the accelerator moves the model to its device and its autocast supplies bf16
    where that pays (CUDA), so master weights never lose precision.
    """
    if not name_or_path:
        raise UserError(f"{stage}: model=... is required (a local path or hub id, usually the SFT model)")
    tok = load_tokenizer(name_or_path, trust_remote_code=trust_remote_code)
    lora = LoraSettings(r=lora_r, alpha=lora_alpha) if lora_r > 0 else None
    model = load_causal_lm(
        name_or_path,
        dtype="fp32",
        device="cpu",
        trust_remote_code=trust_remote_code,
        lora=lora,
        gradient_checkpointing=gradient_checkpointing,
    )
    return model, tok
