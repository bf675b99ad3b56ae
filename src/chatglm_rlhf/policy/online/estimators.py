"""Advantage estimators: one pure function each and one registration (:func:`register_adv_est`).

The online loop (:mod:`chatglm_rlhf.policy.online.loop`) samples ``k`` responses to each of N prompts,
scores them, turns the scores into the sequence reward (truncation penalty, the paper's reference
baseline, normalisation, clipping: :mod:`.rewards`) and hands an estimator :class:`AdvantageInputs`.
The estimator returns per-token advantages ``(N * k, T)`` and, when it trains a critic, the value
targets. What it needs from the loop is declared with its registration: a critic (``gae``), at least
two samples per prompt (the group baselines), the reference baseline subtracted from the reward
(``ref_baseline``), the current policy's greedy answer scored (``remax``), batch normalisation
(``reinforce_pp``), and where the KL goes by default (a per-token penalty in the reward, or a loss term).

Estimators (``estimator=``):

* ``gae``: generalised advantage estimation with a learned critic (PPO; Schulman et al. 2016).
* ``grpo``: ``(r - mean_group) / (std_group + eps)`` (Shao et al. 2024, DeepSeekMath).
* ``dr_grpo``: ``r - mean_group``; no std division and (with ``loss_agg=seq_sum``) no per-response
  length normalisation, both of which bias GRPO (Liu et al. 2025, "Understanding R1-Zero-like training").
* ``rloo``: ``r - mean of the other k - 1`` (Ahmadian et al. 2024): an unbiased leave-one-out baseline.
* ``reinforce_pp``: no per-prompt baseline; the advantages are normalised over the whole batch
  (Hu 2025, REINFORCE++), after the KL reward when the KL is in the reward.
* ``ref_baseline``: REINFORCE on ``r - r(x, y_ref)``, y_ref the SFT model's answer (the ChatGLM-RLHF
  paper's baseline, used without a critic).
* ``remax``: ``r - r(x, y_greedy)``, y_greedy the *current* policy's greedy answer (Li et al. 2024, ReMax).

Adding one: a function ``(AdvantageInputs) -> (advantages, returns | None)``, its hand-computed test,
and ``@register_adv_est(name, ...)`` here (or in any module a plug-in imports).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal

import torch

from chatglm_rlhf.errors import ConfigError

KLMode = Literal["reward", "loss"]


@dataclass
class AdvantageInputs:
    """What the loop knows when it computes advantages; per-token tensors are ``(N * k, T)``, rows
    prompt-major (row ``i * k + j`` is sample j of prompt i)."""

    scores: torch.Tensor  # (N, k): the sequence reward of each response
    mask: torch.Tensor  # (N * k, T): 1 on real response tokens
    kl_rewards: torch.Tensor | None = None  # -kl_coef * KL per token when the KL is in the reward
    values: torch.Tensor | None = None  # the critic's values (estimators registered with critic=True)
    greedy_scores: torch.Tensor | None = None  # (N,): the current policy's greedy answers' rewards
    gamma: float = 1.0
    lam: float = 0.95


Advantages = tuple[torch.Tensor, torch.Tensor | None]  # (advantages, returns for the critic or None)


@dataclass(frozen=True)
class Estimator:
    name: str
    fn: Callable[[AdvantageInputs], Advantages]
    help: str
    critic: bool = False  # trains a value model (the loop builds and updates one)
    min_k: int = 1  # responses per prompt it needs (a group baseline: 2)
    kl_mode: KLMode = "reward"  # where the KL goes under kl_mode=auto
    loss_agg: str = "token_mean"  # the loss reduction under loss_agg=auto
    whiten: bool = False  # advantages normalised over the whole batch (every process) by the loop
    reference_baseline: bool = False  # the loop subtracts r(x, y_ref) from the reward
    greedy_baseline: bool = False  # the loop scores the current policy's greedy answer per prompt


ADV_ESTIMATORS: dict[str, Estimator] = {}


def register_adv_est(name: str, help: str, **meta) -> Callable:  # noqa: A002
    """Decorator: register ``fn`` as estimator ``name`` (``meta``: the :class:`Estimator` flags)."""

    def wrap(fn: Callable[[AdvantageInputs], Advantages]) -> Callable[[AdvantageInputs], Advantages]:
        ADV_ESTIMATORS[name] = Estimator(name, fn, help, **meta)
        return fn

    return wrap


def get_estimator(name: str, where: str = "estimator") -> Estimator:
    if name not in ADV_ESTIMATORS:
        raise ConfigError(f"{where}: unknown {name!r} (choose from {', '.join(ADV_ESTIMATORS)})")
    return ADV_ESTIMATORS[name]


# --- building blocks ---------------------------------------------------------------------------------


def _last_token(mask: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Each row's last real position (0 for an empty row) and whether the row has a token."""
    lengths = mask.long().sum(-1)
    return (lengths - 1).clamp(min=0), lengths > 0


def gae(
    rewards: torch.Tensor, values: torch.Tensor, mask: torch.Tensor, gamma: float = 1.0, lam: float = 0.95
) -> tuple[torch.Tensor, torch.Tensor]:
    """Generalised advantage estimation over response tokens; returns ``(advantages, returns)``.

    ``delta_t = r_t + gamma * V_{t+1} - V_t`` and ``A_t = delta_t + gamma * lam * A_{t+1}``, where the
    value and advantage of a padded position count as 0: the episode ends at a row's last real token
    (the terminal state has value 0), so whatever the padding holds never leaks backwards. Returns are
    ``A + V`` (the value targets); both outputs are 0 on padding.
    """
    mask = mask.to(values.dtype)
    values = values * mask
    rewards = rewards * mask
    T = rewards.shape[-1]
    adv = torch.zeros_like(rewards)
    last = torch.zeros_like(rewards[..., 0])
    for t in reversed(range(T)):
        if t + 1 < T:
            next_value, next_mask = values[..., t + 1], mask[..., t + 1]
        else:
            next_value, next_mask = torch.zeros_like(last), torch.zeros_like(last)
        delta = rewards[..., t] + gamma * next_value - values[..., t]
        last = delta + gamma * lam * next_mask * last
        adv[..., t] = last
    adv = adv * mask
    return adv, (adv + values) * mask


def outcome_rewards(token_rewards: torch.Tensor, scores: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Per-token rewards plus each row's sequence score at its last real token (none for an empty row)."""
    last, has = _last_token(mask)
    bonus = torch.zeros_like(token_rewards).scatter(
        -1, last[:, None], (scores.to(token_rewards.dtype) * has.to(token_rewards.dtype))[:, None]
    )
    return token_rewards + bonus


def reward_to_go(rewards: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """``A_t = sum_{s >= t} r_s`` over each row's real tokens (gamma = 1, no value baseline); 0 on padding."""
    m = mask.to(rewards.dtype)
    r = rewards * m
    return torch.flip(torch.cumsum(torch.flip(r, [-1]), -1), [-1]) * m


def token_advantages(
    seq_adv: torch.Tensor, mask: torch.Tensor, kl_rewards: torch.Tensor | None = None
) -> torch.Tensor:
    """Per-token advantages ``(B, T)`` from per-response ones ``(B,)``.

    Without ``kl_rewards`` every real token of a response gets its response's advantage (the KL is then
    a loss term). With them (``-kl_coef * KL_t``, the KL in the reward) a token's advantage is its
    reward-to-go with the sequence advantage at the last token: the KL of the tokens after it counts
    against it, that before it does not.
    """
    m = mask.to(seq_adv.dtype)
    if kl_rewards is None:
        return seq_adv[:, None] * m
    rewards = kl_rewards * m
    last, has = _last_token(mask)
    rewards = rewards.scatter_add(
        -1, last[:, None], (seq_adv.to(rewards.dtype) * has.to(rewards.dtype))[:, None]
    )
    return reward_to_go(rewards, mask)


def group_advantages(scores: torch.Tensor, scale: bool = True, eps: float = 1e-6) -> torch.Tensor:
    """Each score minus its group's mean, divided by the group's (Bessel-corrected) std with ``scale``
    (as TRL and OpenRLHF compute it). A group of equal scores gets 0 either way (eps keeps it finite)."""
    centred = scores - scores.mean(-1, keepdim=True)
    if not scale:
        return centred
    return centred / (scores.std(-1, keepdim=True) + eps)


def rloo_advantages(scores: torch.Tensor) -> torch.Tensor:
    """``r_i - (sum_j r_j - r_i) / (k - 1)``: the mean of the other samples, which does not depend on
    ``r_i``, so the gradient estimate stays unbiased (equal to ``k / (k - 1) * (r_i - mean)``)."""
    k = scores.shape[-1]
    if k < 2:
        raise ValueError("rloo needs k >= 2 samples per prompt")
    return scores - (scores.sum(-1, keepdim=True) - scores) / (k - 1)


def _outcome(inp: AdvantageInputs, seq_adv: torch.Tensor) -> Advantages:
    """A critic-free estimator's per-response advantages ``(N, k)`` spread over the tokens."""
    return token_advantages(seq_adv.reshape(-1).to(inp.mask.device), inp.mask, inp.kl_rewards), None


# --- the estimators ----------------------------------------------------------------------------------


@register_adv_est("gae", "GAE with a learned critic (PPO)", critic=True)
def gae_advantages(inp: AdvantageInputs) -> Advantages:
    if inp.values is None:
        raise ValueError("gae needs the critic's values")
    rewards = inp.kl_rewards if inp.kl_rewards is not None else torch.zeros_like(inp.values)
    return gae(
        outcome_rewards(rewards, inp.scores.reshape(-1), inp.mask), inp.values, inp.mask, inp.gamma, inp.lam
    )


@register_adv_est("grpo", "group mean / std (GRPO)", min_k=2, kl_mode="loss")
def grpo_advantages(inp: AdvantageInputs) -> Advantages:
    return _outcome(inp, group_advantages(inp.scores, scale=True))


@register_adv_est("dr_grpo", "group mean, no std, no length norm (Dr. GRPO)", min_k=2, kl_mode="loss",
                  loss_agg="seq_sum")  # fmt: skip
def dr_grpo_advantages(inp: AdvantageInputs) -> Advantages:
    return _outcome(inp, group_advantages(inp.scores, scale=False))


@register_adv_est("rloo", "leave-one-out mean (RLOO)", min_k=2)
def rloo(inp: AdvantageInputs) -> Advantages:
    return _outcome(inp, rloo_advantages(inp.scores))


@register_adv_est("reinforce_pp", "batch-normalised, no per-prompt baseline (REINFORCE++)", whiten=True)
def reinforce_pp(inp: AdvantageInputs) -> Advantages:
    return _outcome(inp, inp.scores)


@register_adv_est("ref_baseline", "r - r(SFT answer), the paper's baseline without a critic",
                  reference_baseline=True)  # fmt: skip
def ref_baseline(inp: AdvantageInputs) -> Advantages:
    return _outcome(inp, inp.scores)  # the loop has subtracted r(x, y_ref) from the reward


@register_adv_est("remax", "r - r(the current policy's greedy answer) (ReMax)", greedy_baseline=True)
def remax(inp: AdvantageInputs) -> Advantages:
    if inp.greedy_scores is None:
        raise ValueError("remax needs the greedy answers' rewards")
    return _outcome(inp, inp.scores - inp.greedy_scores.to(inp.scores.dtype)[:, None])
