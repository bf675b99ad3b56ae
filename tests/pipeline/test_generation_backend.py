"""generation_backend=hf|vllm reaches every sampler of a run; vLLM settings leave hf runs' fingerprints alone."""

import dataclasses

from chatglm_rlhf.models.generation import GenerationSettings
from chatglm_rlhf.pipeline.fingerprint import canonical
from chatglm_rlhf.pipeline.run import load_pipeline_config


def sections(obj, path=""):
    for f in dataclasses.fields(obj):
        v = getattr(obj, f.name)
        if isinstance(v, GenerationSettings):
            yield f"{path}{f.name}", v
        elif dataclasses.is_dataclass(v):
            yield from sections(v, f"{path}{f.name}.")


def test_generation_backend_sets_every_section():
    for profile in ("smoke", "real-smoke"):
        cfg = load_pipeline_config(None, ["generation_backend=vllm", "vllm.kv_cache_gb=2"], profile=profile)
        found = dict(sections(cfg))
        assert {"ppo.generation", "dpo.generation"} <= set(found)
        assert all(s.backend == "vllm" and s.vllm.kv_cache_gb == 2 for s in found.values()), found
        # "sections" (the demo's default; the real profiles' is auto) leaves each section as the profile set it
        plain = load_pipeline_config(None, ["generation_backend=sections", "ppo.generation.backend=vllm"],
                                     profile=profile)  # fmt: skip
        backends = {k: s.backend for k, s in sections(plain)}
        assert backends["ppo.generation"] == "vllm" and backends["dpo.generation"] == "hf"


def test_the_real_profiles_default_is_auto_resolved_to_an_installed_backend():
    import importlib.util

    cfg = load_pipeline_config(None, [], profile="real-smoke")
    expected = "vllm" if importlib.util.find_spec("vllm") is not None else "hf"
    assert cfg.generation_backend == expected
    assert all(s.backend == expected for _, s in sections(cfg))


def test_vllm_settings_count_only_under_backend_vllm():
    hf = canonical(GenerationSettings())
    assert "vllm" not in hf and hf["backend"] == "hf"
    on = canonical(GenerationSettings(backend="vllm"))
    assert on["vllm"]["kv_cache_gb"] == 1.0
