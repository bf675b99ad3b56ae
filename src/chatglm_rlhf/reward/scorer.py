"""``RewardScorer``: the reward interface that PPO, DPO (``pairs_from=rm``) and evaluation use.

``score(samples, responses) -> list[float]`` scores ``responses[i]`` as the reply to ``samples[i]``. Text
is tokenised with the RM's own tokenizer (:func:`.encoding.encode_for_rm`), so an RM whose tokenizer
differs from the policy's (e.g. a MiniLM encoder) works unchanged.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path

import torch

from chatglm_rlhf.data.schema import Comparison, DialogueSample
from chatglm_rlhf.reward.encoding import encode_for_rm, truncation_summary
from chatglm_rlhf.reward.model import read_info

DEFAULT_MAX_LENGTH = 512
log = logging.getLogger(__name__)


class RewardScorer:
    def __init__(self, model, tokenizer, max_length: int = DEFAULT_MAX_LENGTH, batch_size: int = 16):
        self.model = model
        self.tokenizer = tokenizer
        limit = getattr(tokenizer, "model_max_length", None)
        # Encoders have a hard position limit; huge sentinel values (1e30) mean "no limit".
        if isinstance(limit, int) and 0 < limit < max_length:
            max_length = limit
        self.max_length = max_length
        self.batch_size = batch_size

    @classmethod
    def from_pretrained(
        cls,
        path: str | Path,
        device: str = "auto",
        dtype: str = "auto",
        max_length: int | None = None,
        batch_size: int = 16,
        trust_remote_code: bool = False,
        key: str = "model",
    ) -> RewardScorer:
        """Load a saved RM (``rm train`` output) for scoring, on ``device`` ("auto": cuda, mps, cpu).

        ``key`` is the config key ``path`` came from (``reward_model`` in PPO), for load errors."""
        from chatglm_rlhf.reward.model import load_reward_model

        model, tok = load_reward_model(
            str(path), trust_remote_code=trust_remote_code, dtype=dtype, device=device, key=key
        )
        model.eval()
        info = read_info(path)
        if not info:
            log.warning(
                "%s has no reward_model.json: not an `rm train` output, its score head may be untrained", path
            )
        return cls(model, tok, max_length or int(info.get("max_length", DEFAULT_MAX_LENGTH)), batch_size)

    @property
    def device(self) -> torch.device:
        return next(self.model.parameters()).device

    def encode(self, samples: Sequence[DialogueSample], responses: Sequence[str]) -> list[list[int]]:
        if len(samples) != len(responses):
            raise ValueError(f"score: {len(samples)} samples but {len(responses)} responses")
        # INFO, not WARNING: PPO scores every batch and would repeat the line each time.
        with truncation_summary(f"score: {len(samples)} responses", logging.INFO):
            return [encode_for_rm(self.tokenizer, s, r, self.max_length) for s, r in zip(samples, responses)]

    @torch.no_grad()
    def score_ids(self, seqs: Sequence[list[int]]) -> list[float]:
        """Rewards for token sequences; batches are formed from similar lengths, results in input order."""
        from chatglm_rlhf.data.collate import pad_sequences
        from chatglm_rlhf.reward.model import rewards

        was_training = self.model.training
        self.model.eval()
        order = sorted(range(len(seqs)), key=lambda i: -len(seqs[i]))
        out = [0.0] * len(seqs)
        pad = self.tokenizer.pad_token_id
        for start in range(0, len(order), self.batch_size):
            idx = order[start : start + self.batch_size]
            batch = [seqs[i] for i in idx]
            ids = pad_sequences(batch, pad).to(self.device)
            mask = pad_sequences([[1] * len(s) for s in batch], 0).to(self.device)
            for i, r in zip(idx, rewards(self.model, ids, mask).tolist()):
                out[i] = r
        self.model.train(was_training)
        return out

    def score(self, samples: Sequence[DialogueSample], responses: Sequence[str]) -> list[float]:
        """One reward per (sample, response) pair."""
        return self.score_ids(self.encode(samples, responses))

    def score_comparisons(self, comparisons: Sequence[Comparison]) -> tuple[list[float], list[float]]:
        """``(rewards of response_a, rewards of response_b)``."""
        samples = [c.sample() for c in comparisons]
        both = self.score(
            samples + samples, [c.response_a for c in comparisons] + [c.response_b for c in comparisons]
        )
        return both[: len(comparisons)], both[len(comparisons) :]
