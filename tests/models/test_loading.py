"""Device/dtype choice and loading a local tiny checkpoint, with and without LoRA."""

from __future__ import annotations

import pytest
import torch

from chatglm_rlhf.errors import ConfigError
from chatglm_rlhf.models.loading import (
    LoraSettings,
    describe_model,
    load_causal_lm,
    load_tokenizer,
    pick_device,
    pick_dtype,
)
from chatglm_rlhf.models.tiny import make_tiny_checkpoint

TEXTS = [
    f"user {i} asks why the sky is blue; the assistant says: light scatters {i % 7} times."
    for i in range(200)
]


@pytest.fixture(scope="module")
def ckpt(tmp_path_factory):
    return make_tiny_checkpoint(
        tmp_path_factory.mktemp("tiny"), TEXTS, vocab_size=300, hidden_size=32, num_heads=2
    )


def test_pick_device_cpu_and_auto():
    assert pick_device("cpu") == torch.device("cpu")
    expected = "cuda" if torch.cuda.is_available() else None
    if expected:
        assert pick_device("auto").type == "cuda"
    elif not torch.backends.mps.is_available():
        assert pick_device().type == "cpu"
    with pytest.raises(ConfigError):
        pick_device("toaster")


@pytest.mark.skipif(torch.cuda.device_count() > 1, reason="cuda:1 exists here")
def test_pick_device_rejects_missing_cuda():
    with pytest.raises(ConfigError, match="cuda:1"):
        pick_device("cuda:1")


def test_pick_dtype_cpu_is_fp32_and_explicit_honoured():
    cpu = torch.device("cpu")
    assert pick_dtype(cpu) == torch.float32
    assert pick_dtype("cpu", "bf16") == torch.bfloat16
    assert pick_dtype(cpu, "fp16") == torch.float16
    assert pick_dtype(cpu, "FP32") == torch.float32
    assert pick_dtype(cpu, torch.float16) == torch.float16
    with pytest.raises(ConfigError):
        pick_dtype(cpu, "int3")


@pytest.mark.parametrize(("bf16", "expected"), [(True, torch.bfloat16), (False, torch.float16)])
def test_pick_dtype_cuda_auto(monkeypatch, bf16, expected):
    # no GPU needed: the choice only asks torch whether bf16 is native
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda including_emulation=True: bf16)
    assert pick_dtype(torch.device("cuda"), "auto") == expected


def test_load_tokenizer_left_pads_and_fills_missing_pad(ckpt, tmp_path):
    tok = load_tokenizer(str(ckpt))
    assert tok.padding_side == "left" and tok.pad_token == "<|pad|>"
    # a tokenizer saved without a pad token falls back to eos
    tok.pad_token = None
    tok.save_pretrained(tmp_path)
    reloaded = load_tokenizer(str(tmp_path), padding_side="right")
    assert reloaded.pad_token == reloaded.eos_token == "<|endoftext|>"
    assert reloaded.padding_side == "right"


def test_load_causal_lm_cpu_fp32_and_bf16(ckpt):
    model = load_causal_lm(str(ckpt), device="cpu")
    p = next(model.parameters())
    assert p.dtype == torch.float32 and p.device.type == "cpu"
    assert "float32" in describe_model(model) and "cpu" in describe_model(model)
    assert next(load_causal_lm(str(ckpt), dtype="bf16", device="cpu").parameters()).dtype == torch.bfloat16


def test_lora_trains_only_adapters_and_disable_gives_base_logits(ckpt):
    base = load_causal_lm(str(ckpt), device="cpu")
    model = load_causal_lm(str(ckpt), device="cpu", lora=LoraSettings(r=4, alpha=8))
    trainable = [n for n, p in model.named_parameters() if p.requires_grad]
    assert trainable and all("lora_" in n for n in trainable)
    assert any("mlp" in n for n in trainable) and any("self_attn" in n for n in trainable)  # all-linear
    total = sum(p.numel() for p in model.parameters())
    n_train = sum(p.numel() for p in model.parameters() if p.requires_grad)
    assert f"{n_train:,} trainable" in describe_model(model) and n_train < total
    # lora_B starts at zero (adapter = identity); perturb it so "disabled" is distinguishable from "enabled"
    with torch.no_grad():
        for n, p in model.named_parameters():
            if "lora_B" in n:
                p.normal_(std=0.5)
    ids = torch.tensor([[3, 10, 11, 12, 4]])
    with torch.no_grad():
        base_logits = base(ids).logits
        assert not torch.allclose(model(ids).logits, base_logits)
        with model.disable_adapter():
            assert torch.allclose(model(ids).logits, base_logits, atol=1e-6)


def test_lora_target_modules_and_gradient_checkpointing(ckpt):
    model = load_causal_lm(
        str(ckpt),
        device="cpu",
        lora=LoraSettings(r=2, target_modules=["q_proj"]),
        gradient_checkpointing=True,
    )
    trainable = [n for n, p in model.named_parameters() if p.requires_grad]
    assert trainable and all("q_proj.lora_" in n for n in trainable)
    inner = model.base_model.model
    assert getattr(inner, "is_activation_checkpointing", None) or inner.is_gradient_checkpointing
    model.train()
    ids = torch.tensor([[3, 10, 11, 12, 4, 20]])
    model(ids, labels=ids).loss.backward()
    grads = [p.grad for n, p in model.named_parameters() if "lora_A" in n]
    assert grads and all(g is not None for g in grads)


def test_load_reports_are_quiet_unless_verbose(monkeypatch):
    from transformers.utils import logging as hf_logging

    from chatglm_rlhf.models.loading import quiet_transformers

    monkeypatch.delenv("CHATGLM_RLHF_VERBOSE", raising=False)
    monkeypatch.delenv("TRANSFORMERS_VERBOSITY", raising=False)
    before = hf_logging.get_verbosity()
    hf_logging.set_verbosity_warning()  # the load reports are warnings
    try:
        with quiet_transformers():
            assert hf_logging.get_verbosity() == hf_logging.ERROR
        assert hf_logging.get_verbosity() == hf_logging.WARNING
        monkeypatch.setenv("CHATGLM_RLHF_VERBOSE", "1")
        with quiet_transformers():
            assert hf_logging.get_verbosity() == hf_logging.WARNING
    finally:
        hf_logging.set_verbosity(before)


def test_a_bad_model_path_is_a_user_error_naming_the_key(tmp_path, ckpt):
    from chatglm_rlhf.errors import UserError

    with pytest.raises(UserError, match=r"^reward_model=.*no such folder"):
        load_tokenizer(str(tmp_path / "missing"), key="reward_model")
    with pytest.raises(UserError, match=r"^model=.*a file, expected a model folder"):
        load_causal_lm(str(ckpt / "config.json"))


@pytest.mark.parametrize(
    "argv",
    [["rm", "train", "model={d}", "data={d}/x.jsonl"], ["ppo", "model={d}", "reward_model={d}", "prompts={d}/p.jsonl"],
     ["dpo", "model={d}", "data={d}/x.jsonl"], ["sft", "model={d}", "data={d}/x.jsonl"]],
)  # fmt: skip
def test_a_folder_that_is_not_a_model_is_a_one_line_error_in_every_command(tmp_path, capsys, argv):
    from chatglm_rlhf.cli.main import main

    d = tmp_path / "notamodel"
    d.mkdir()
    (d / "x.jsonl").write_text('{"prompt": "a?", "chosen": "b", "rejected": "c"}\n')
    (d / "p.jsonl").write_text('{"id": "p", "prompt": "a?"}\n')
    assert main([a.format(d=d) for a in argv]) == 2
    err = capsys.readouterr().err
    assert f"{d}: not a checkpoint folder (no config.json)" in err and "Traceback" not in err
    assert len([x for x in err.splitlines() if x.startswith("error")]) == 1
