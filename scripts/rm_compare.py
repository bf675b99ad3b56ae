"""Which proxy RM for the real profile: MiniLM-L6 + a scalar head vs SmolLM2 (the policy) + a scalar head.

Both train on the same pairs of the real profile's rm_train part (its split, its seed; ``--train-pairs``
subsamples them, the first N in the split's order) with the profile's RM recipe (``rm_train``: Bradley-Terry
+ score regulariser, 128 tokens); the policy backbone with LoRA (``--policy-lora-r``, 0 = full fine-tuning)
and its own learning rate. Accuracy on human-labelled pairs neither saw: rm_eval and heldout (all of
them, or ``--eval-pairs`` of each). Writes ``OUT/rm_compare.json`` and prints a table.

    PYTHONPATH=src python scripts/rm_compare.py --out out/rm_compare --train-pairs 192 --epochs 1
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import time
from pathlib import Path


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", default="out/rm_compare")
    ap.add_argument("--train-pairs", type=int, default=0, help="rm_train pairs to train on (0 = all)")
    ap.add_argument("--eval-pairs", type=int, default=0, help="pairs of rm_eval and of heldout (0 = all)")
    ap.add_argument("--epochs", type=float, default=2.0)
    ap.add_argument("--backbones", default="minilm,policy")
    ap.add_argument("--policy-lora-r", type=int, default=16)
    ap.add_argument("--policy-lr", type=float, default=2e-4)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("overrides", nargs="*", help="real-profile key=value (e.g. task.seed=1)")
    a = ap.parse_args()

    import torch

    from chatglm_rlhf.data.formats import load_comparisons
    from chatglm_rlhf.data.io import write_jsonl
    from chatglm_rlhf.evaluate.agreement import preference_accuracy
    from chatglm_rlhf.models.gguf import smollm2_checkpoint
    from chatglm_rlhf.pipeline.profiles.real import minilm_dir
    from chatglm_rlhf.pipeline.run import load_pipeline_config
    from chatglm_rlhf.reward.scorer import RewardScorer
    from chatglm_rlhf.reward.stages import run_rm_stage
    from chatglm_rlhf.tasks.hh.task import HHTask

    torch.set_num_threads(a.threads)
    cfg = load_pipeline_config(None, list(a.overrides), default="real")
    out = Path(a.out)
    data = out / "data"
    data.mkdir(parents=True, exist_ok=True)
    HHTask(cfg.data).write_data(data)  # the profile's own split: the same pairs a run trains on
    train = load_comparisons(data / "rm_train.jsonl")[0]
    train = train[: a.train_pairs] if a.train_pairs else train
    write_jsonl(out / "train.jsonl", train)
    evals = {}
    for part in ("rm_eval", "heldout"):
        pairs = load_comparisons(data / f"{part}.jsonl")[0]
        evals[part] = pairs[: a.eval_pairs] if a.eval_pairs else pairs
    write_jsonl(out / "rm_eval.jsonl", evals["rm_eval"])
    inits = {"minilm": lambda: str(minilm_dir()), "policy": lambda: str(smollm2_checkpoint())}
    results = {}
    for name in a.backbones.split(","):
        rm_cfg = dataclasses.replace(cfg.rm_train, epochs=a.epochs, progress=False, threads=a.threads)
        if name == "policy":
            rm_cfg = dataclasses.replace(rm_cfg, lora_r=a.policy_lora_r, lora_alpha=2 * a.policy_lora_r,
                                         lr=a.policy_lr)  # fmt: skip
        t0 = time.time()
        m = run_rm_stage(inits[name](), out / "train.jsonl", out / "rm_eval.jsonl", out / name, rm_cfg)
        seconds = time.time() - t0
        scorer = RewardScorer.from_pretrained(str(out / name), device="cpu", batch_size=32)
        res = {"train_pairs": len(train), "steps": m.get("steps"), "train_seconds": seconds,
               "seconds_per_step": seconds / max(m.get("steps") or 1, 1), "lora_r": rm_cfg.lora_r,
               "lr": rm_cfg.lr}  # fmt: skip
        for part, pairs in evals.items():
            r_a, r_b = scorer.score_comparisons(pairs)
            res[part] = preference_accuracy(r_a, r_b, [c.label for c in pairs])
        results[name] = res
        print(f"[rm_compare] {name}: {json.dumps(res)}", flush=True)
    (out / "rm_compare.json").write_text(json.dumps(results, indent=2))
    print(f"{'backbone':10} {'pairs':>6} {'steps':>6} {'s/step':>7} {'rm_eval':>8} {'heldout':>8}")
    for name, r in results.items():
        print(f"{name:10} {r['train_pairs']:6d} {r['steps'] or 0:6d} {r['seconds_per_step']:7.1f} "
              f"{r['rm_eval']['accuracy']:8.3f} {r['heldout']['accuracy']:8.3f}  (n {r['rm_eval']['n']}, "
              f"{r['heldout']['n']})")  # fmt: skip


if __name__ == "__main__":
    main()
