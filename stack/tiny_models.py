"""Builds tiny random-weight chat, embedding and rerank models (no download) for real-vLLM tests.

Run with the vLLM venv's interpreter: `python stack/tiny_models.py OUT_DIR [KIND ...]`.
Creates OUT_DIR/chat, OUT_DIR/embed and OUT_DIR/rerank; a folder that is already complete is
left alone, and each is built in a scratch folder then renamed so a crash never leaves a
half-written model that looks complete.
"""

from __future__ import annotations

import os
import shutil
import sys
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

import torch  # noqa: E402
from tokenizers import Tokenizer, decoders, models, normalizers, pre_tokenizers, processors, trainers  # noqa: E402
from transformers import (  # noqa: E402
    BertConfig,
    BertForSequenceClassification,
    BertModel,
    GenerationConfig,
    LlamaConfig,
    LlamaForCausalLM,
    PreTrainedTokenizerFast,
)

KINDS = ("chat", "embed", "rerank")
# Files whose presence marks a finished model folder (written last is the rename itself).
REQUIRED_FILES = ("config.json", "model.safetensors", "tokenizer.json", "tokenizer_config.json")
SEED = 1234

CORPUS = [
    "Hello, how are you today?",
    "The quick brown fox jumps over the lazy dog.",
    "A gateway routes requests to inference servers.",
    "Large language models generate text one token at a time.",
    "Embeddings map sentences to vectors of numbers.",
    "Rerankers score how relevant a document is to a query.",
    "What is the capital of France? Paris is the capital of France.",
    "Say this is a test. This is a test.",
    "The weather is nice and the sky is blue.",
    "Count from one to ten: 1 2 3 4 5 6 7 8 9 10.",
    "system user assistant tool function message content role",
] * 4

# ChatML-like template: enough for /v1/chat/completions and /tokenize with messages to work.
CHAT_TEMPLATE = (
    "{{ bos_token }}"
    "{% for message in messages %}"
    "{{ '<|im_start|>' + message['role'] + '\n' + message['content'] + '<|im_end|>' + '\n' }}"
    "{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}"
)


def chat_tokenizer() -> PreTrainedTokenizerFast:
    """Byte-level BPE (every string encodes, no unknown token) with ChatML special tokens."""
    specials = ["<s>", "</s>", "<pad>", "<|im_start|>", "<|im_end|>"]
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=512, special_tokens=specials, initial_alphabet=pre_tokenizers.ByteLevel.alphabet()
    )
    tok.train_from_iterator(CORPUS, trainer=trainer)
    return PreTrainedTokenizerFast(
        tokenizer_object=tok,
        bos_token="<s>",
        eos_token="</s>",
        pad_token="<pad>",
        additional_special_tokens=["<|im_start|>", "<|im_end|>"],
        chat_template=CHAT_TEMPLATE,
        model_max_length=2048,
    )


def bert_tokenizer() -> PreTrainedTokenizerFast:
    """WordPiece whose post-processor adds [CLS]/[SEP] (and pair segments for the reranker)."""
    # A fixed vocabulary rather than WordPieceTrainer: the trainer's output order varies run to run.
    specials = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
    chars = [chr(c) for c in range(33, 127)]  # printable ASCII: ordinary text rarely maps to [UNK]
    words = sorted({w.strip(".,?!:").lower() for line in CORPUS for w in line.split()} - {""})
    vocab = specials + chars + ["##" + c for c in chars] + [w for w in words if len(w) > 1]
    tok = Tokenizer(models.WordPiece(vocab={t: i for i, t in enumerate(vocab)}, unk_token="[UNK]"))
    tok.normalizer = normalizers.BertNormalizer(lowercase=True)
    tok.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    tok.decoder = decoders.WordPiece()
    cls, sep = tok.token_to_id("[CLS]"), tok.token_to_id("[SEP]")
    tok.post_processor = processors.TemplateProcessing(
        single="[CLS] $A [SEP]",
        pair="[CLS] $A [SEP] $B:1 [SEP]:1",
        special_tokens=[("[CLS]", cls), ("[SEP]", sep)],
    )
    return PreTrainedTokenizerFast(
        tokenizer_object=tok,
        unk_token="[UNK]",
        pad_token="[PAD]",
        cls_token="[CLS]",
        sep_token="[SEP]",
        mask_token="[MASK]",
        model_max_length=512,
        # BERT pair inputs (reranker) need segment ids, which the tokenizers backend omits by default.
        model_input_names=["input_ids", "token_type_ids", "attention_mask"],
    )


def build_chat(out: Path) -> None:
    tok = chat_tokenizer()
    # head_dim 64: vLLM's CPU attention rejects small head sizes (16 failed).
    config = LlamaConfig(
        vocab_size=len(tok),
        hidden_size=128,
        intermediate_size=256,
        num_hidden_layers=2,
        num_attention_heads=2,
        num_key_value_heads=1,
        head_dim=64,
        max_position_embeddings=2048,
        tie_word_embeddings=True,
        bos_token_id=tok.bos_token_id,
        eos_token_id=tok.eos_token_id,
        pad_token_id=tok.pad_token_id,
        torch_dtype="float32",
    )
    model = LlamaForCausalLM(config)
    model.generation_config = GenerationConfig(
        bos_token_id=tok.bos_token_id,
        eos_token_id=[tok.eos_token_id, tok.convert_tokens_to_ids("<|im_end|>")],
        pad_token_id=tok.pad_token_id,
    )
    model.save_pretrained(out, safe_serialization=True)
    tok.save_pretrained(out)


def bert_config(tok: PreTrainedTokenizerFast, **extra) -> BertConfig:
    return BertConfig(
        vocab_size=len(tok),
        hidden_size=128,
        intermediate_size=256,
        num_hidden_layers=2,
        num_attention_heads=2,
        max_position_embeddings=512,
        pad_token_id=tok.pad_token_id,
        torch_dtype="float32",
        **extra,
    )


def build_embed(out: Path) -> None:
    tok = bert_tokenizer()
    BertModel(bert_config(tok)).save_pretrained(out, safe_serialization=True)
    tok.save_pretrained(out)


def build_rerank(out: Path) -> None:
    tok = bert_tokenizer()
    model = BertForSequenceClassification(bert_config(tok, num_labels=1))
    model.save_pretrained(out, safe_serialization=True)
    tok.save_pretrained(out)


BUILDERS = {"chat": build_chat, "embed": build_embed, "rerank": build_rerank}


def is_complete(folder: Path) -> bool:
    return all((folder / name).is_file() for name in REQUIRED_FILES)


def ensure(out_dir: Path, kind: str) -> Path:
    """Build OUT_DIR/kind unless it is already complete; returns the folder."""
    final = out_dir / kind
    if is_complete(final):
        return final
    # Per-process scratch name: two test sessions may build the same folder at once.
    scratch = out_dir / f".{kind}.partial-{os.getpid()}"
    shutil.rmtree(scratch, ignore_errors=True)
    # Same seed per model so rebuilding gives identical weights whatever else was built first.
    torch.manual_seed(SEED)
    BUILDERS[kind](scratch)
    if is_complete(final):  # another builder finished first; its result is identical
        shutil.rmtree(scratch, ignore_errors=True)
        return final
    shutil.rmtree(final, ignore_errors=True)  # an incomplete leftover
    os.replace(scratch, final)
    return final


def main(argv: list[str]) -> int:
    if len(argv) < 2 or any(k not in KINDS for k in argv[2:]):
        print(f"usage: {argv[0]} OUT_DIR [{'|'.join(KINDS)} ...]", file=sys.stderr)
        return 2
    out_dir = Path(argv[1])
    out_dir.mkdir(parents=True, exist_ok=True)
    for kind in argv[2:] or KINDS:
        print(f"tiny_models: {ensure(out_dir, kind)}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
