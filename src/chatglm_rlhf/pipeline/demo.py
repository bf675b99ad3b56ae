"""The embedded default: the whole pipeline on the offline demo world, with tiny local models.

Stages (each resumable, see :mod:`chatglm_rlhf.pipeline.runner`):

    world    prompts and mixed-quality SFT demonstrations from the demo world
    base     a byte-level BPE tokenizer trained on the world's text + a tiny GLM model
    sft      supervised fine-tuning on the demonstrations
    sft_eval gold score of SFT samples on held-out prompts
    collect  k SFT samples per prompt, compared pairwise by simulated annotators

The alignment stages (filter, RM, PPO, DPO, ablations, evaluation) and the report are in
:mod:`chatglm_rlhf.pipeline.demo_align`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from chatglm_rlhf.config import field_
from chatglm_rlhf.evaluate.evaluate import EvalGeneration
from chatglm_rlhf.models.generation import GenerationSettings
from chatglm_rlhf.pipeline.demo_align import AlignStages
from chatglm_rlhf.policy.dpo.config import DPOConfig
from chatglm_rlhf.policy.ppo.config import PPOConfig
from chatglm_rlhf.reward.filtering import FilterConfig
from chatglm_rlhf.reward.rm_config import RMConfig


@dataclass
class WorldSettings:
    seed: int = field_(0, help="seed of the world, the data and the models")
    n_sft: int = field_(3000, help="SFT demonstrations")
    n_eval: int = field_(200, help="held-out prompts for evaluation")
    n_pref: int = field_(400, help="prompts whose SFT samples are annotated")
    n_rl: int = field_(400, help="prompts for PPO / DPO")
    corpus: int = field_(4000, help="texts the tokenizer is trained on")


@dataclass
class TinyModelSettings:
    vocab_size: int = field_(1024, help="BPE vocabulary size")
    hidden_size: int = field_(128, help="hidden size of the tiny GLM")
    num_layers: int = field_(4, help="transformer layers")
    num_heads: int = field_(4, help="attention heads")
    max_position_embeddings: int = field_(256, help="longest sequence")


@dataclass
class DemoSFTSettings:
    steps: int = field_(600, help="optimizer steps")
    batch_size: int = field_(32, help="sequences per step")
    lr: float = field_(2e-3, help="peak learning rate (tiny models like it high)")
    max_length: int = field_(192, help="max tokens per sequence")


@dataclass
class CollectSettings:
    k: int = field_(3, help="SFT samples per prompt (3: all three pairs, so cycles can appear)")
    n_annotators: int = field_(6, help="simulated annotators")
    n_spammers: int = field_(1, help="of which answer at random")
    overlap: int = field_(3, help="annotators per pair")
    noise: float = field_(0.1, help="std of each annotator's judgement noise")
    length_bias: float = field_(0.15, help="annotators' preference for longer answers (per 10 words)")
    tie_margin: float = field_(0.05, help="utility difference below which annotators say tie")


def _rm_defaults() -> RMConfig:
    return RMConfig(
        epochs=2.0, batch_size=16, lr=5e-4, max_length=192, reg_coef=1e-3, cpu=True, log_every=20,
        eval_buckets=[2, 5, 10, 20],
    )  # fmt: skip


def _ppo_defaults() -> PPOConfig:
    return PPOConfig(
        steps=40, rollout_batch_size=32, mini_batch_size=16, ppo_epochs=2, lr=5e-4, critic_lr=1e-3,
        kl_coef=0.1, ptx_coef=0.1, max_prompt_tokens=128, max_length=192, cpu=True,
        generation=GenerationSettings(max_new_tokens=48, temperature=1.0, batch_size=64),
    )  # fmt: skip


def _dpo_defaults() -> DPOConfig:
    return DPOConfig(
        k=8, beta=0.1, lr=5e-4, epochs=3.0, nll_weight=1.0, batch_size=8, max_length=192, cpu=True,
        generation=GenerationSettings(max_new_tokens=48, temperature=1.0, batch_size=64), log_every=20,
    )  # fmt: skip


def _eval_defaults() -> EvalGeneration:
    return EvalGeneration(max_new_tokens=48, greedy=True, batch_size=64)


def _filter_defaults() -> FilterConfig:
    return FilterConfig(bucket_edges=[2, 5, 10, 20])


@dataclass
class DemoConfig:
    profile: str = field_("default", help="smoke | default: the base settings that the keys below override")
    world: WorldSettings = field(default_factory=WorldSettings)
    model: TinyModelSettings = field(default_factory=TinyModelSettings)
    sft: DemoSFTSettings = field(default_factory=DemoSFTSettings)
    collect: CollectSettings = field(default_factory=CollectSettings)
    generation: GenerationSettings = field(
        default_factory=lambda: GenerationSettings(max_new_tokens=48, temperature=1.0, batch_size=64)
    )
    filter: FilterConfig = field(default_factory=_filter_defaults)
    rm: RMConfig = field(default_factory=_rm_defaults)
    ppo: PPOConfig = field(default_factory=_ppo_defaults)
    dpo: DPOConfig = field(default_factory=_dpo_defaults)
    eval: EvalGeneration = field(default_factory=_eval_defaults)
    ablations: list[str] = field_(
        ["length_balance", "baseline", "ptx"],
        help="the paper's ablations to run: length_balance, baseline, ptx; and gold_reward (opt-in: PPO "
        "on the gold judge's score instead of the RM, to tell RM errors from PPO's limits)",
    )
    ceiling_n: int = field_(
        8, help="SFT samples per held-out prompt for the best-of-n ceiling (gold vs RM pick); 0 = skip"
    )
    progress: bool = field_(True, help="progress bars")


# The smoke profile: the same stages on a few dozen prompts, < 3 minutes on 2 CPU cores.
PROFILES: dict[str, dict[str, Any]] = {
    "default": {},
    "smoke": {
        "world": {"n_sft": 600, "n_eval": 40, "n_pref": 60, "n_rl": 60, "corpus": 1500},
        "model": {"hidden_size": 64, "num_layers": 2},
        "sft": {"steps": 120, "batch_size": 16},
        "collect": {"n_annotators": 4, "overlap": 2},
        "rm": {"epochs": 1.0},
        "ppo": {"steps": 4, "rollout_batch_size": 16, "mini_batch_size": 8, "filter_k": 2},
        "dpo": {"k": 4, "epochs": 1.0},
        "ceiling_n": 2,
    },
}


def load_demo_config(recipe: str | None, overrides: list[str], profile: str | None = None) -> DemoConfig:
    """Profile defaults, then the recipe, then ``key=value`` overrides."""
    from chatglm_rlhf.config import load_profiled_config

    return load_profiled_config(DemoConfig, PROFILES, "default", recipe, overrides, profile)[0]


class DemoRun(AlignStages):
    """Holds the run folder and config; each ``stage_*`` method is one resumable stage."""

    def __init__(self, cfg: DemoConfig, out: Path):
        from chatglm_rlhf.tasks.demo import DemoWorld

        self.cfg = cfg
        self.out = Path(out)
        self.world = DemoWorld(seed=cfg.world.seed)
        self.data = self.out / "data"
        self.models = self.out / "models"

    # -- helpers -------------------------------------------------------------------------------------
    def load(self, name: str):
        from chatglm_rlhf.models.loading import load_causal_lm, load_tokenizer

        path = self.models / name
        return load_causal_lm(str(path), dtype="fp32", device="cpu"), load_tokenizer(str(path))

    def samples(self, name: str):
        from chatglm_rlhf.data.io import read_samples

        return read_samples(self.data / f"{name}.jsonl", strict=True)[0]

    # -- stages --------------------------------------------------------------------------------------
    def stage_world(self, _: Path) -> dict:
        from chatglm_rlhf.data.io import write_jsonl
        from chatglm_rlhf.tasks.demo import make_sft_data

        w = self.cfg.world
        demos = make_sft_data(self.world, w.n_sft, seed=w.seed)
        write_jsonl(self.data / "sft.jsonl", [d.to_sample() for d in demos])
        for split, n in (("eval", w.n_eval), ("pref", w.n_pref), ("rl", w.n_rl)):
            write_jsonl(self.data / f"{split}_prompts.jsonl", self.world.prompts(split, n))
        modes: dict[str, int] = {}
        for d in demos:
            modes[d.mode] = modes.get(d.mode, 0) + 1
        return {"sft_examples": len(demos), "sft_modes": modes, "eval_prompts": w.n_eval}

    def stage_base(self, _: Path) -> dict:
        from chatglm_rlhf.models.tiny import build_tiny_model, train_tokenizer

        m = self.cfg.model
        tok = train_tokenizer(self.world.corpus(self.cfg.world.corpus), vocab_size=m.vocab_size)
        tok.model_max_length = m.max_position_embeddings
        model = build_tiny_model(
            tok,
            hidden_size=m.hidden_size,
            num_layers=m.num_layers,
            num_heads=m.num_heads,
            num_kv_heads=m.num_heads,
            max_position_embeddings=m.max_position_embeddings,
            seed=self.cfg.world.seed,
        )
        model.save_pretrained(self.models / "base")
        tok.save_pretrained(self.models / "base")
        return {"parameters": sum(p.numel() for p in model.parameters()), "vocab_size": len(tok)}

    def stage_sft(self, _: Path) -> dict:
        from chatglm_rlhf.policy.sft import SFTConfig, SFTTrainer, load_sft_examples

        s = self.cfg.sft
        model, tok = self.load("base")
        cfg = SFTConfig(
            model=str(self.models / "base"),
            output_dir=str(self.models / "sft"),
            max_length=s.max_length,
            max_steps=s.steps,
            batch_size=s.batch_size,
            lr=s.lr,
            warmup_ratio=0.05,
            seed=self.cfg.world.seed,
            cpu=True,
            log_every=20,
            progress=self.cfg.progress,
        )
        examples = load_sft_examples(str(self.data / "sft.jsonl"))
        n_eval = max(1, len(examples) // 10)  # a held-out slice: the capability probe for PPO's ptx
        result = SFTTrainer(cfg, model=model, tokenizer=tok).train(examples[n_eval:], examples[:n_eval])
        return {
            "train_loss": result["train_loss"],
            "heldout_loss": result["eval_loss"],
            "steps": result["steps"],
        }

    def stage_sft_eval(self, _: Path) -> dict:
        from chatglm_rlhf.collect.generate import generate_candidates
        from chatglm_rlhf.data.io import write_jsonl
        from chatglm_rlhf.tasks.demo import GoldJudge

        model, tok = self.load("sft")
        prompts = self.samples("eval_prompts")
        out = generate_candidates(
            model, tok, prompts, 1, self.cfg.generation, seed=self.cfg.world.seed, progress=self.cfg.progress
        )
        write_jsonl(self.data / "sft_eval_samples.jsonl", out)
        judge = GoldJudge()
        scores = [judge.score(s, s.responses[0]).total for s in out]
        per_cat: dict[str, list[float]] = {}
        for s, sc in zip(out, scores):
            per_cat.setdefault(s.category or "none", []).append(sc)
        return {
            "gold_score": sum(scores) / len(scores),
            "gold_score_by_category": {c: sum(v) / len(v) for c, v in sorted(per_cat.items())},
        }

    def stage_collect(self, _: Path) -> dict:
        from chatglm_rlhf.collect.generate import generate_candidates
        from chatglm_rlhf.data.formats import write_trl
        from chatglm_rlhf.data.io import write_jsonl
        from chatglm_rlhf.tasks.demo import AnnotatorPool

        c = self.cfg.collect
        model, tok = self.load("sft")
        cands = generate_candidates(
            model,
            tok,
            self.samples("pref_prompts"),
            c.k,
            self.cfg.generation,
            seed=self.cfg.world.seed + 1,
            progress=self.cfg.progress,
        )
        write_jsonl(self.data / "candidates.jsonl", cands)
        pool = AnnotatorPool(
            n_annotators=c.n_annotators,
            n_spammers=c.n_spammers,
            noise=c.noise,
            length_bias=c.length_bias,
            tie_margin=c.tie_margin,
            seed=self.cfg.world.seed,
        )
        comparisons = pool.annotate(cands, overlap=c.overlap)
        write_jsonl(self.data / "comparisons.jsonl", comparisons)
        written, ties = write_trl(self.data / "comparisons.trl.jsonl", comparisons)
        labels = {lab: sum(x.label == lab for x in comparisons) for lab in ("a", "b", "tie")}
        return {
            "comparisons": len(comparisons),
            "labels": labels,
            "trl_written": written,
            "trl_ties_skipped": ties,
        }

    def stages(self):
        from chatglm_rlhf.pipeline.runner import Stage

        return [
            Stage("world", self.stage_world),
            Stage("base", self.stage_base),
            Stage("sft", self.stage_sft),
            Stage("sft_eval", self.stage_sft_eval, metrics_key="sft"),
            Stage("collect", self.stage_collect, metrics_key="data"),
            Stage("filter", self.stage_filter),
            Stage("rm", self.stage_rm),
            Stage("ppo", self.stage_ppo),
            Stage("dpo", self.stage_dpo),
            *self.ablation_stages(),
            Stage("evaluate", self.stage_evaluate),
            *([Stage("ceiling", self.stage_ceiling)] if self.cfg.ceiling_n > 0 else []),
        ]

    def ablation_stages(self):
        from chatglm_rlhf.pipeline.demo_align import ABLATIONS
        from chatglm_rlhf.pipeline.runner import Stage

        unknown = set(self.cfg.ablations) - set(ABLATIONS)
        if unknown:
            from chatglm_rlhf.errors import ConfigError

            raise ConfigError(f"ablations: unknown {sorted(unknown)} (choose from {', '.join(ABLATIONS)})")
        out = []
        if "length_balance" in self.cfg.ablations:
            out += [
                Stage("filter_nobalance", self.stage_filter_nobalance),
                Stage("rm_nobalance", self.stage_rm_nobalance),
                Stage("ppo_nobalance", self.stage_ppo_nobalance),
            ]
        if "baseline" in self.cfg.ablations:
            out.append(Stage("ppo_nobaseline", self.stage_ppo_nobaseline))
        if "ptx" in self.cfg.ablations:
            out.append(Stage("ppo_noptx", self.stage_ppo_noptx))
        if "gold_reward" in self.cfg.ablations:
            out.append(Stage("ppo_goldreward", self.stage_ppo_goldreward))
        return out


def run_demo(cfg: DemoConfig, out: str | Path, from_stage: str | None = None) -> dict:
    from chatglm_rlhf.pipeline.runner import run_stages
    from chatglm_rlhf.utils.training import save_json

    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    save_json(out / "config.json", cfg)
    run = DemoRun(cfg, out)
    from chatglm_rlhf.pipeline.demo_align import finish_run

    return finish_run(out, run_stages(out, run.stages(), from_stage=from_stage))
