"""The stage library: every stage of every profile, as functions of a :class:`RunContext` and settings.

    models.py    base (a tiny model built for the task), sft, checkpoint (an existing chat model)
    data.py      data (the task writes its files), sft_eval, collect (SFT candidates + annotators),
                 generate (candidates for human annotation: the run stops for the annotate app)
    reward.py    filter, rm (proxy), judge_rm (the stand-in for gold when a task has none)
    policy.py    any registered algorithm (policy/registry.py) and its ablation twins
    evaluate.py  evaluate (gold judge, or judge RM + proxy RM + LLM judge), ceiling, probe
    report.py    metrics.json's run block and report.html

Profiles (:mod:`chatglm_rlhf.pipeline.profiles`) choose and order them.
"""
