"""Candidate collection: the SFT model answers each prompt (with its history) k times.

The output is our samples JSONL with ``responses`` filled: the input to annotation, where every pair
of a prompt's responses can be compared (k = 3 gives three pairs, enough to see cyclic preferences).
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace

from chatglm_rlhf.config import field_
from chatglm_rlhf.data.schema import DialogueSample
from chatglm_rlhf.models.generation import GenerationSettings, decode_response, make_generator


@dataclass
class GenerateConfig:
    model: str = field_("", help="model that answers: local path or hub id (required)")
    prompts: str = field_("", help="prompts file: our samples JSONL (history + prompt)")
    output: str = field_("out/candidates.jsonl", help="where the candidates go (our samples JSONL)")
    k: int = field_(2, help="responses per prompt (>= 2 for comparisons)")
    max_prompt_tokens: int = field_(384, help="history is trimmed (oldest turns first) to fit")
    generation: GenerationSettings = field(default_factory=GenerationSettings)
    seed: int = field_(0, help="sampling seed")
    trust_remote_code: bool = field_(False, help="allow model code from the checkpoint (ChatGLM3)")
    device: str = field_("auto", help="auto | cpu | cuda | cuda:N")


def generate_candidates(
    model,
    tokenizer,
    samples: list[DialogueSample],
    k: int,
    settings: GenerationSettings,
    max_prompt_tokens: int | None = None,
    seed: int = 0,
    progress: bool = True,
) -> list[DialogueSample]:
    """Each sample comes back with ``k`` sampled responses; ``meta["finished"]`` flags cut-off ones."""
    from chatglm_rlhf.data.templates import prompt_ids

    prompts = [prompt_ids(tokenizer, s, max_prompt_tokens)[0] for s in samples]
    gens = make_generator(model, tokenizer, settings, progress=progress).generate(
        prompts, k, settings, seed=seed
    )
    out = []
    for s, g in zip(samples, gens):
        texts = [decode_response(tokenizer, x) for x in g]
        meta = {**s.meta, "finished": [x.finished for x in g]}
        out.append(replace(s, responses=texts, meta=meta))
    return out


def run_generate(cfg: GenerateConfig) -> int:
    from chatglm_rlhf.data.io import read_samples, write_jsonl
    from chatglm_rlhf.errors import UserError
    from chatglm_rlhf.models.loading import load_causal_lm, load_tokenizer

    if not cfg.model or not cfg.prompts:
        raise UserError("generate: model=... and prompts=... are required")
    if cfg.k < 1:
        raise UserError(f"generate: k must be >= 1, got {cfg.k}")
    samples, report = read_samples(cfg.prompts)
    report.print()
    tok = load_tokenizer(cfg.model, trust_remote_code=cfg.trust_remote_code)
    model = load_causal_lm(cfg.model, device=cfg.device, trust_remote_code=cfg.trust_remote_code)
    cands = generate_candidates(model, tok, samples, cfg.k, cfg.generation, cfg.max_prompt_tokens, cfg.seed)
    n = write_jsonl(cfg.output, cands)
    print(f"wrote {n} prompts x {cfg.k} responses to {cfg.output}")
    return 0
