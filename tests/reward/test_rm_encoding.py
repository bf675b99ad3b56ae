"""RM sequences: decoder and encoder wrapping, truncation from the left of the history, encoder training."""

import pytest
import torch

from chatglm_rlhf.data.schema import Comparison, DialogueSample, Turn
from chatglm_rlhf.models.tiny import train_tokenizer
from chatglm_rlhf.reward.encoding import encode_for_rm, specials

TEXTS = ["What is two plus two?", "Four.", "The answer is four.", "Name a fruit.", "Apple.", "Which one?"]


@pytest.fixture(scope="module")
def glm_tok():
    return train_tokenizer(TEXTS * 5, vocab_size=300)


@pytest.fixture(scope="module")
def bert_dir(tmp_path_factory):
    """A tiny BERT (WordPiece tokenizer without eos, no chat template) saved locally."""
    from transformers import BertConfig, BertForSequenceClassification, BertTokenizerFast

    d = tmp_path_factory.mktemp("bert")
    words = sorted(
        {w.strip("?.").lower() for t in TEXTS for w in t.split()} | {"yes", "no", "user", "assistant"}
    )
    vocab = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", "<", ">", "|", "?", ".", *words]
    (d / "vocab.txt").write_text("\n".join(vocab) + "\n")
    tok = BertTokenizerFast(str(d / "vocab.txt"))  # positional: "vocab_file" in 4.x, "vocab" in 5.x
    tok.save_pretrained(d)
    cfg = BertConfig(
        vocab_size=len(vocab), hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
        intermediate_size=64, max_position_embeddings=64, num_labels=1,
    )  # fmt: skip
    torch.manual_seed(0)
    BertForSequenceClassification(cfg).save_pretrained(d)
    return str(d)


def test_decoder_sequence_is_prompt_then_response_then_eos(glm_tok):
    sample = DialogueSample("s", "Name a fruit.")
    ids = encode_for_rm(glm_tok, sample, "Apple.", 64)
    assert ids[-1] == glm_tok.eos_token_id
    text = glm_tok.decode(ids)
    assert text.startswith("<|user|>\nName a fruit.<|assistant|>\nApple.")
    assert not specials(glm_tok).encoder


def test_truncation_drops_history_first_and_keeps_the_end(glm_tok):
    history = [Turn("user", "What is two plus two?"), Turn("assistant", "The answer is four.")] * 3
    sample = DialogueSample("s", "Which one?", history=history)
    full = encode_for_rm(glm_tok, sample, "Apple.", 10_000)
    short = encode_for_rm(glm_tok, sample, "Apple.", len(full) - 5)
    assert len(short) <= len(full) - 5
    assert glm_tok.decode(short).endswith("Which one?<|assistant|>\nApple.<|endoftext|>")
    assert glm_tok.decode(short).count("two plus two") == 2  # one of the three oldest exchanges went
    # a response too long for the budget is cut at its end, the eos stays last
    long_resp = " ".join(["Apple."] * 60)
    ids = encode_for_rm(glm_tok, DialogueSample("s", "Name a fruit."), long_resp, 32)
    assert len(ids) == 32 and ids[-1] == glm_tok.eos_token_id
    assert "Name a fruit" in glm_tok.decode(ids)  # a quarter of the room stays for the context
    with pytest.raises(ValueError):
        encode_for_rm(glm_tok, sample, "x", 2)


def test_encoder_sequence_uses_cls_and_sep(bert_dir):
    from chatglm_rlhf.reward.model import load_rm_tokenizer

    tok = load_rm_tokenizer(bert_dir)
    sp = specials(tok)
    assert sp.encoder and sp.prefix == (tok.cls_token_id,) and sp.suffix == (tok.sep_token_id,)
    ids = encode_for_rm(tok, DialogueSample("s", "Name a fruit."), "Apple.", 64)
    assert ids[0] == tok.cls_token_id and ids[-1] == tok.sep_token_id
    assert "name a fruit" in tok.decode(ids) and "apple" in tok.decode(ids)


def test_encoder_reward_model_trains_and_scores(bert_dir, tmp_path):
    from chatglm_rlhf.reward.scorer import RewardScorer
    from chatglm_rlhf.reward.trainer import RMConfig, RMTrainer, pairs_from_comparisons

    data = [Comparison(f"s{i}", "Name a fruit.", "yes apple", "no", "a") for i in range(16)]
    cfg = RMConfig(
        model=bert_dir, output_dir=str(tmp_path / "rm"), lr=1e-3, batch_size=8, max_steps=6,
        max_length=32, progress=False, warmup_ratio=0.0,
    )  # fmt: skip
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        result = RMTrainer(cfg).train(pairs_from_comparisons(data), data[:4])
    finally:
        torch.set_num_threads(n)
    assert result["eval"]["accuracy"] == 1.0
    scorer = RewardScorer.from_pretrained(tmp_path / "rm", device="cpu")
    r = scorer.score([data[0].sample()] * 2, ["yes apple", "no"])
    assert r[0] > r[1]


def test_truncation_summary_is_logged_at_the_asked_level(glm_tok, caplog):
    import logging

    from chatglm_rlhf.reward.encoding import truncation_summary

    history = [Turn("user", "What is two plus two?"), Turn("assistant", "The answer is four.")] * 3
    sample = DialogueSample("s", "Which one?", history=history)
    full = len(encode_for_rm(glm_tok, sample, "Apple.", 10_000))
    with caplog.at_level(logging.INFO), truncation_summary("rm eval", level=logging.WARNING):
        encode_for_rm(glm_tok, sample, "Apple.", full - 5)
    summary = [r for r in caplog.records if "truncated to fit max_length" in r.getMessage()]
    assert len(summary) == 1 and summary[0].levelno == logging.WARNING  # was the templates logger's level (0)
