"""``utils.fsdp`` on modules that are not sharded (one process, DDP): every helper is the identity there.

The sharded side (FSDP2 over 2 gloo processes) is exercised by ``test_dist_ppo_fsdp.py``.
"""

from __future__ import annotations

import pytest
import torch


@pytest.fixture(scope="module")
def tiny_lm(world):
    from transformers import AutoModelForCausalLM

    return AutoModelForCausalLM.from_pretrained(world["policy"])


def test_block_modules_are_the_decoder_layers(tiny_lm):
    from chatglm_rlhf.policy.online.critic import ValueModel
    from chatglm_rlhf.utils.fsdp import block_modules

    assert [type(b).__name__ for b in block_modules(tiny_lm)] == ["GlmDecoderLayer"] * 2
    assert len(block_modules(ValueModel.from_causal_lm(tiny_lm))) == 2  # a critic's body too


def test_helpers_are_the_identity_without_sharding(tiny_lm):
    from chatglm_rlhf.utils.distributed import full_state_dict
    from chatglm_rlhf.utils.fsdp import full_params, is_fsdp, sharded_fraction

    assert not is_fsdp(tiny_lm) and sharded_fraction(tiny_lm) == 1.0
    with full_params(tiny_lm, None):  # a no-op: no collective, nothing swapped
        pass
    plain = tiny_lm.state_dict()
    full = full_state_dict(tiny_lm)
    assert full.keys() == plain.keys() and all(torch.equal(full[k], plain[k]) for k in plain)


def test_full_state_dict_unwraps_ddp(tiny_lm, tmp_path):
    import torch.distributed as dist

    from chatglm_rlhf.utils.fsdp import full_state_dict

    if dist.is_initialized():
        pytest.skip("a process group exists already")
    dist.init_process_group("gloo", init_method=f"file://{tmp_path / 'store'}", rank=0, world_size=1)
    try:
        ddp = torch.nn.parallel.DistributedDataParallel(tiny_lm)
        assert full_state_dict(ddp).keys() == tiny_lm.state_dict().keys()  # no "module." prefix
    finally:
        dist.destroy_process_group()
