"""The memory planner: shapes match real parameter counts, and one configuration matches a hand computation."""

import json

import pytest

from chatglm_rlhf.cli.main import main
from chatglm_rlhf.errors import ConfigError, UserError
from chatglm_rlhf.plan import GIB, PRESETS, PlanConfig, plan, resolve_model, shape_from_config


def test_preset_parameter_counts_match_the_published_sizes():
    # Published totals: ChatGLM3-6B 6,243,584,000; Llama-3-8B 8,030,261,248; Qwen2-7B 7,615,616,512.
    assert PRESETS["chatglm3-6b"].params() == 6_243_584_000
    assert PRESETS["llama-3-8b"].params() == 8_030_261_248
    assert PRESETS["qwen2-7b"].params() == 7_615_616_512
    assert round(PRESETS["glm-4-9b"].params() / 1e9, 1) == 9.4


def _tiny_glm():
    from chatglm_rlhf.models.tiny import build_tiny_model, train_tokenizer

    tok = train_tokenizer(["hello world, what is the answer"] * 5, vocab_size=300)
    return build_tiny_model(tok, hidden_size=32, num_layers=2)


def test_config_json_shape_counts_every_parameter_of_a_real_model(tmp_path):
    from transformers import AutoModelForSequenceClassification

    model = _tiny_glm()
    model.config.save_pretrained(tmp_path)
    shape = resolve_model(str(tmp_path))
    assert shape.params() == sum(p.numel() for p in model.parameters())
    cls_cfg = model.config.__class__.from_dict({**model.config.to_dict(), "num_labels": 1, "id2label": None})
    scorer = AutoModelForSequenceClassification.from_config(cls_cfg)
    assert shape.body_params() == sum(p.numel() for p in scorer.parameters())


def test_lora_count_matches_peft_on_an_unfused_model():
    from peft import LoraConfig, get_peft_model
    from transformers import LlamaConfig, LlamaForCausalLM

    cfg = LlamaConfig(
        vocab_size=300, hidden_size=32, intermediate_size=80, num_hidden_layers=2,
        num_attention_heads=4, num_key_value_heads=2, tie_word_embeddings=False,
    )  # fmt: skip
    model = get_peft_model(LlamaForCausalLM(cfg), LoraConfig(r=4, target_modules="all-linear"))
    shape = shape_from_config(cfg.to_dict(), "tiny-llama", "test")
    assert shape.lora_params(4) == sum(p.numel() for p in model.parameters() if p.requires_grad)


def test_chatglm3_ppo_zero3_matches_a_hand_computation():
    """ChatGLM3-6B, PPO, 8 GPUs, ZeRO-3, bf16, full fine-tuning, micro_batch 1, prompt 1024 + gen 1024,
    gen_batch 8, no checkpointing. Every number below is worked out from the documented formulas."""
    cfg = PlanConfig(model="chatglm3-6b", stage="ppo", gpus=8, strategy="zero3", micro_batch=1)
    sp = plan(cfg)["strategies"][0]
    P = 6_243_584_000  # published parameter count
    layer = 203_960_832  # qkv 4096*4608 + bias 4608 + dense 4096^2 + mlp 3*4096*13696 + norms 2*4096
    emb = 65024 * 4096  # = 266,338,304, and the untied output layer is as large
    body = 28 * layer + emb + 4096 + 4096  # no output layer; final norm + scalar head
    assert body == 5_977_249_792
    # actor: bf16 weights / 8 + gather (embedding + output layer + 2 layers) in bf16
    actor_w = P * 2 / 8 + (2 * emb + 2 * layer) * 2
    assert actor_w == 3_442_092_544
    per_layer = 2 * 2048 * (4 * 4096 + 2 * 4096 + 2 * 256 + 4 * 13696)  # bf16, 1 seq of 2048 tokens
    assert per_layer == 327_155_712
    actor_act = 28 * per_layer + 1 * 1024 * 65024 * (2 + 8)  # + logits over the 1024 generated tokens
    kv = 2 * 28 * 256 * 2048 * 8 * 2
    critic_w = body * 2 / 8 + (emb + 4096 + 2 * layer) * 2
    ref_act = 8 * per_layer + 8 * 1024 * 65024 * 10  # one block's working set over gen_batch=8 + logits
    reward_act = 8 * per_layer
    expected = {
        "actor": [actor_w, P * 2 / 8, P * 12 / 8, actor_act, kv],
        "critic": [critic_w, body * 2 / 8, body * 12 / 8, 28 * per_layer, 0],
        "reference": [P * 2, 0, 0, ref_act, 0],
        "reward": [body * 2, 0, 0, reward_act, 0],
    }
    for role, (w, g, o, a, k) in expected.items():
        got = sp.roles[role]
        for comp, want in zip(("weights", "grads", "optimizer", "activations", "kv_cache"), (w, g, o, a, k)):
            assert got[comp] == pytest.approx(want / GIB, rel=1e-12), (role, comp)
    static = sum(w + g + o for w, g, o, _, _ in expected.values())
    train = actor_act + 28 * per_layer
    rollout = ref_act + reward_act + kv
    assert sp.peak_gib == pytest.approx((static + max(train, rollout)) / GIB + 1.0, rel=1e-12)
    assert round(sp.peak_gib, 1) == 67.2 and sp.fits and sp.param_dtype == "bf16"


def test_strategies_order_memory_as_expected_and_lora_shrinks_it():
    full = {s.strategy: s for s in plan(PlanConfig(model="glm-4-9b", stage="dpo", gpus=8))["strategies"]}
    assert full["ddp"].static_gib > full["zero2"].static_gib > full["zero3"].static_gib
    assert full["fsdp"].static_gib == pytest.approx(full["zero3"].static_gib, rel=0.1)
    lora = plan(PlanConfig(model="glm-4-9b", stage="dpo", gpus=8, strategy="ddp", lora_r=16))
    assert lora["strategies"][0].static_gib < 0.3 * full["ddp"].static_gib
    ckpt = plan(PlanConfig(model="glm-4-9b", stage="sft", strategy="ddp", gradient_checkpointing=True))
    plain = plan(PlanConfig(model="glm-4-9b", stage="sft", strategy="ddp"))
    assert ckpt["strategies"][0].train_gib < 0.5 * plain["strategies"][0].train_gib


def test_cli_prints_tables_and_json(capsys):
    assert main(["plan", "model=chatglm3-6b", "stage=rm", "gpus=8", "strategy=all"]) == 0
    out = capsys.readouterr().out
    assert "zero3 (trainable weights bf16), GiB per GPU:" in out and "summary (peak GiB per GPU)" in out
    assert main(["plan", "model=llama-3-8b", "stage=sft", "strategy=fsdp", "format=json"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert data["model"]["params"] == 8_030_261_248
    assert [s["strategy"] for s in data["strategies"]] == ["fsdp"]


def test_bad_input_names_the_key(tmp_path):
    with pytest.raises(ConfigError, match="strategy"):
        PlanConfig(strategy="zero4")
    with pytest.raises(UserError, match="preset"):
        resolve_model("no-such-model")
    (tmp_path / "config.json").write_text(json.dumps({"hidden_size": 8, "num_attention_heads": 2}))
    with pytest.raises(UserError, match="num_hidden_layers"):
        resolve_model(str(tmp_path))
    assert main(["plan", "stage=pretrain"]) == 2


def test_vllm_rollouts_replace_the_kv_cache_with_the_engines_share():
    base = dict(model="chatglm3-6b", stage="ppo", strategy="fsdp", gpu_mem_gib=80.0)
    hf = plan(PlanConfig(**base))["strategies"][0]
    on = plan(PlanConfig(**base, rollout_backend="vllm", vllm_gpu_memory_utilization=0.3))["strategies"][0]
    awake = plan(PlanConfig(**base, rollout_backend="vllm", vllm_sleep=False))["strategies"][0]
    m = resolve_model("chatglm3-6b")
    engine = on.roles["vllm"]
    assert engine["weights"] == pytest.approx(m.params() * 2 / GIB)  # bf16, unsharded
    assert engine["weights"] + engine["kv_cache"] == pytest.approx(0.3 * 80)
    assert on.roles["actor"]["kv_cache"] == 0.0 and hf.roles["actor"]["kv_cache"] > 0
    assert on.static_gib == pytest.approx(hf.static_gib)  # the engine is not a trained role
    frozen = hf.rollout_gib - hf.roles["actor"]["kv_cache"]  # the frozen roles' forwards
    assert on.rollout_gib == pytest.approx(max(frozen, 24.0))  # the engine sleeps before them
    assert awake.rollout_gib == pytest.approx(frozen + 24.0)
    assert on.train_gib == pytest.approx(hf.train_gib)  # asleep while training
    assert awake.train_gib == pytest.approx(hf.train_gib + 24.0)
    with pytest.raises(UserError, match="vllm_gpu_memory_utilization"):
        plan(PlanConfig(**base, rollout_backend="vllm", vllm_gpu_memory_utilization=0.1))
    with pytest.raises(ConfigError, match="rollout_backend"):
        PlanConfig(**base, rollout_backend="sglang")
