"""``rm score``: add rewards to a samples file (``responses`` lists) or to a preference file."""

from __future__ import annotations

from chatglm_rlhf.data.io import first_record, read_samples, write_jsonl


def score_file(scorer, path: str, output: str, strict: bool = False) -> int:
    """Write ``path``'s records to ``output`` with rewards; returns the number of responses scored.

    Samples get ``meta["rewards"]`` (one per response, in order); comparisons get
    ``meta["reward_a"]`` / ``meta["reward_b"]``. Unreadable lines are reported, not dropped silently.
    """
    if "responses" in first_record(path):
        samples, report = read_samples(path, strict=strict)
        report.print()
        flat = [(i, r) for i, s in enumerate(samples) for r in s.responses]
        rewards = scorer.score([samples[i] for i, _ in flat], [r for _, r in flat])
        for s in samples:
            s.meta["rewards"] = []
        for (i, _), r in zip(flat, rewards):
            samples[i].meta["rewards"].append(r)
        write_jsonl(output, samples)
        return len(flat)
    from chatglm_rlhf.data.formats import load_comparisons

    comparisons, report = load_comparisons(path, strict=strict)
    report.print()
    r_a, r_b = scorer.score_comparisons(comparisons)
    for c, a, b in zip(comparisons, r_a, r_b):
        c.meta["reward_a"], c.meta["reward_b"] = a, b
    write_jsonl(output, comparisons)
    return 2 * len(comparisons)
