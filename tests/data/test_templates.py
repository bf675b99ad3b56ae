"""Prompt/response tokenisation, truncation and collation on the tiny tokenizer."""

from __future__ import annotations

import itertools
import random

import pytest
import torch

from chatglm_rlhf.data.collate import collate_encoded, length_grouped_batches, pad_sequences
from chatglm_rlhf.data.schema import DialogueSample, Turn
from chatglm_rlhf.data.templates import (
    FALLBACK_TEMPLATE,
    IGNORE_INDEX,
    TruncationError,
    encode_pair,
    encode_sft,
    prompt_ids,
    render,
    reset_truncation_counts,
    response_ids,
    split_history,
    truncation_counts,
)
from chatglm_rlhf.models.tiny import train_tokenizer

WORDS = ["hi", "there", "how", "are", "you", "fine", "thanks", "rain", "tea", "why", "sky", "blue", "old"]
TEXTS = [" ".join(w) + "." for w in itertools.islice(itertools.product(WORDS, repeat=3), 300)]


@pytest.fixture(scope="module")
def tok():
    return train_tokenizer(TEXTS, vocab_size=300)


def _sample(n_exchanges: int = 3, system: bool = True) -> DialogueSample:
    history = [Turn("system", "be brief")] if system else []
    for i in range(n_exchanges):
        history += [Turn("user", f"old question {i} why sky"), Turn("assistant", f"old answer {i} rain tea")]
    return DialogueSample(id="s1", prompt="how are you?", history=history)


def _len(tok, sample: DialogueSample) -> int:
    return len(prompt_ids(tok, sample)[0])


def test_prompt_plus_response_equals_full_template_rendering(tok):
    s = _sample()
    for response in ["fine thanks", " fine, thanks!", "\nfine", "中文 ok"]:
        full = tok.apply_chat_template(s.messages(response), tokenize=False)
        expected = tok.encode(full, add_special_tokens=False)
        assert prompt_ids(tok, s)[0] + response_ids(tok, response) == expected, response


def test_prompt_ends_with_assistant_header_and_response_with_eos(tok):
    ids, dropped = prompt_ids(tok, _sample())
    assert dropped == 0
    assert tok.decode(ids).endswith("how are you?<|assistant|>\n")
    r = response_ids(tok, "fine")
    assert r[-1] == tok.eos_token_id and tok.decode(r[:-1]) == "fine"
    assert response_ids(tok, "fine", add_eos=False) == r[:-1]


def test_fallback_template_for_tokenizer_without_one(tok):
    plain = train_tokenizer(TEXTS, vocab_size=300)
    plain.chat_template = None
    s = _sample(1)
    assert render(plain, s.messages(), add_generation_prompt=True) == render(tok, s.messages(), True)
    assert tok.apply_chat_template(s.messages(), chat_template=FALLBACK_TEMPLATE, tokenize=False) == (
        "<|system|>\nbe brief<|user|>\nold question 0 why sky<|assistant|>\nold answer 0 rain tea<|endoftext|>"
        "<|user|>\nhow are you?"
    )
    assert prompt_ids(plain, s) == prompt_ids(tok, s)


def test_split_history_groups_exchanges_and_pins_system():
    h = [
        Turn("system", "s"),
        Turn("assistant", "a0"),
        Turn("user", "u1"),
        Turn("assistant", "a1"),
        Turn("user", "u2"),
    ]
    system, exchanges = split_history(h)
    assert [t.content for t in system] == ["s"]
    assert [[t.content for t in ex] for ex in exchanges] == [["a0"], ["u1", "a1"], ["u2"]]


def test_prompt_truncation_drops_oldest_exchange_first(tok):
    s = _sample(3)
    full, without_first = (
        _len(tok, s),
        _len(tok, DialogueSample("s1", s.prompt, [s.history[0]] + s.history[3:])),
    )
    reset_truncation_counts()
    ids, dropped = prompt_ids(tok, s, max_prompt_tokens=full - 1)
    assert dropped == 2 and len(ids) == without_first
    text = tok.decode(ids)
    assert "<|system|>\nbe brief" in text and "old question 0" not in text and "old question 1" in text
    assert truncation_counts["history_turns_dropped"] == 2
    assert truncation_counts["samples_with_history_dropped"] == 1


def test_prompt_left_truncates_when_bare_prompt_too_long(tok):
    s = DialogueSample(id="long", prompt="why " * 50, history=[Turn("user", "hi"), Turn("assistant", "yo")])
    reset_truncation_counts()
    full_bare = prompt_ids(tok, DialogueSample("long", s.prompt))[0]
    ids, dropped = prompt_ids(tok, s, max_prompt_tokens=10)
    assert dropped == 2 and ids == full_bare[-10:]
    assert truncation_counts["prompts_left_truncated"] == 1


def test_encode_sft_masks_prompt_and_labels_response(tok):
    s = _sample(1)
    enc = encode_sft(tok, s, "fine thanks", max_length=512)
    resp = response_ids(tok, "fine thanks")
    assert enc.input_ids == prompt_ids(tok, s)[0] + resp
    assert enc.prompt_len == len(enc.input_ids) - len(resp)
    assert enc.labels[: enc.prompt_len] == [IGNORE_INDEX] * enc.prompt_len
    assert enc.labels[enc.prompt_len :] == resp
    assert not enc.response_truncated and enc.history_dropped == 0


def test_encode_sft_drops_history_but_keeps_response_intact(tok):
    s = _sample(3)
    response = "fine thanks, the sky is blue because of rain and tea"
    resp = response_ids(tok, response)
    max_length = _len(tok, s) + len(resp) - 1  # one token too many with the full history
    enc = encode_sft(tok, s, response, max_length)
    assert len(enc.input_ids) <= max_length
    assert enc.history_dropped == 2
    assert sum(x != IGNORE_INDEX for x in enc.labels) == len(resp)  # response tokens + eos, all kept
    assert enc.input_ids[-len(resp) :] == resp and enc.input_ids[-1] == tok.eos_token_id


def test_encode_sft_raises_when_response_cannot_fit(tok):
    s = _sample(2)
    bare = _len(tok, DialogueSample("s1", s.prompt, [s.history[0]]))
    response = "why " * 40
    with pytest.raises(TruncationError, match="'s1'"):
        encode_sft(tok, s, response, max_length=bare + 5)
    with pytest.raises(TruncationError):
        encode_sft(tok, s, response, max_length=bare, truncate_response=True)  # no room for any response


def test_encode_sft_truncate_response_cuts_the_end(tok):
    s = _sample(2)
    bare = _len(tok, DialogueSample("s1", s.prompt, [s.history[0]]))
    response = "why " * 40
    reset_truncation_counts()
    enc = encode_sft(tok, s, response, max_length=bare + 5, truncate_response=True)
    assert len(enc.input_ids) == bare + 5 and enc.response_truncated and enc.history_dropped == 4
    assert enc.input_ids[enc.prompt_len :] == response_ids(tok, response)[:5]
    assert tok.eos_token_id not in enc.input_ids[enc.prompt_len :]
    assert truncation_counts["responses_truncated"] == 1


def test_encode_pair_shares_the_prompt(tok):
    s = _sample(3)
    chosen, rejected = "fine", "why " * 12
    longest = len(response_ids(tok, rejected))
    c, r = encode_pair(tok, s, chosen, rejected, max_length=_len(tok, s) + longest - 1)
    assert c.prompt_len == r.prompt_len and c.input_ids[: c.prompt_len] == r.input_ids[: r.prompt_len]
    assert c.history_dropped == r.history_dropped == 2
    assert c.input_ids[c.prompt_len :] == response_ids(tok, chosen)
    assert r.input_ids[r.prompt_len :] == response_ids(tok, rejected)
    bare = _len(tok, DialogueSample("s1", s.prompt, [s.history[0]]))
    with pytest.raises(TruncationError):
        encode_pair(tok, s, chosen, rejected, max_length=bare + 3)
    c, r = encode_pair(tok, s, chosen, rejected, max_length=bare + 3, truncate_response=True)
    assert not c.response_truncated and r.response_truncated and len(r.input_ids) == bare + 3


def test_pad_and_collate(tok):
    assert pad_sequences([[1, 2, 3], [4]], 0).tolist() == [[1, 2, 3], [4, 0, 0]]
    assert pad_sequences([[1, 2, 3], [4]], 0, side="left").tolist() == [[1, 2, 3], [0, 0, 4]]
    a = encode_sft(tok, _sample(0), "fine", 512)
    b = encode_sft(tok, _sample(2), "fine thanks you", 512)
    batch = collate_encoded([a, b], tok.pad_token_id)
    assert batch["input_ids"].shape == (2, len(b.input_ids))
    assert batch["attention_mask"].sum(1).tolist() == [len(a.input_ids), len(b.input_ids)]
    assert batch["input_ids"][0, len(a.input_ids) :].eq(tok.pad_token_id).all()
    assert batch["labels"][0, len(a.input_ids) :].eq(IGNORE_INDEX).all()
    assert batch["prompt_lens"].tolist() == [a.prompt_len, b.prompt_len]
    left = collate_encoded([a, b], tok.pad_token_id, side="left")
    assert left["input_ids"][0, -len(a.input_ids) :].tolist() == a.input_ids
    assert left["attention_mask"].dtype == torch.long


def _padding(lengths: list[int], batches: list[list[int]]) -> int:
    return sum(max(lengths[i] for i in b) * len(b) - sum(lengths[i] for i in b) for b in batches)


def test_length_grouped_batches_cover_every_index_once_and_cut_padding():
    rng = random.Random(0)
    lengths = [rng.randint(5, 500) for _ in range(1003)]
    batches = length_grouped_batches(lengths, batch_size=8, seed=1)
    assert sorted(i for b in batches for i in b) == list(range(len(lengths)))
    assert all(1 <= len(b) <= 8 for b in batches)
    order = list(range(len(lengths)))
    rng.shuffle(order)
    random_batches = [order[i : i + 8] for i in range(0, len(order), 8)]
    assert _padding(lengths, batches) < 0.25 * _padding(lengths, random_batches)
    assert batches == length_grouped_batches(lengths, batch_size=8, seed=1)
    assert batches != length_grouped_batches(lengths, batch_size=8, seed=2)
    fixed = length_grouped_batches(lengths, batch_size=8, seed=1, shuffle=False)
    assert sorted(i for b in fixed for i in b) == list(range(len(lengths)))
