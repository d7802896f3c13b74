"""A library index: ids, attributes and embeddings of a music collection.

Written by `launch/embed.py` from a trained model; read by retrieval,
evaluation and the session simulator. One `.npz` file:

  ids         [N] str      recording ids (TFDS ids, or paths relative to a folder)
  embeddings  [N, d] f32   L2-normalised audio embeddings
  attributes  [N] str      JSON object per recording ({} when unknown)
  meta        str          JSON: model workdir, checkpoint step, source
"""

from __future__ import annotations

import dataclasses
import json
import os
from typing import Any

import numpy as np


@dataclasses.dataclass
class LibraryIndex:
  ids: list[str]
  embeddings: np.ndarray             # [N, d] float32
  attributes: list[dict[str, Any]]
  meta: dict[str, Any]

  def __post_init__(self):
    if not len(self.ids) == len(self.embeddings) == len(self.attributes):
      raise ValueError(f"index lengths differ: {len(self.ids)} ids, "
                       f"{len(self.embeddings)} embeddings, {len(self.attributes)} attributes")

  def __len__(self) -> int:
    return len(self.ids)

  def save(self, path: str) -> str:
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    np.savez(path, ids=np.asarray(self.ids, dtype=str),
             embeddings=np.asarray(self.embeddings, np.float32),
             attributes=np.asarray([json.dumps(a, sort_keys=True) for a in self.attributes],
                                   dtype=str),
             meta=np.asarray(json.dumps(self.meta, sort_keys=True)))
    return path if path.endswith(".npz") else path + ".npz"


def load(path: str) -> LibraryIndex:
  with np.load(path, allow_pickle=False) as data:
    return LibraryIndex(ids=[str(i) for i in data["ids"]],
                        embeddings=data["embeddings"].astype(np.float32),
                        attributes=[json.loads(a) for a in data["attributes"]],
                        meta=json.loads(str(data["meta"])))


def concatenate(parts: list[LibraryIndex], meta: dict[str, Any] | None = None) -> LibraryIndex:
  """One index of several, in order (the parts of a multi-process embedding)."""
  if not parts:
    raise ValueError("no index to concatenate")
  dims = {p.embeddings.shape[1] for p in parts if len(p)}
  if len(dims) > 1:
    raise ValueError(f"indexes of different embedding sizes: {sorted(dims)}")
  ids = [i for p in parts for i in p.ids]
  if len(set(ids)) != len(ids):
    raise ValueError("the indexes share ids; each record must be in one part")
  return LibraryIndex(
      ids=ids, embeddings=np.concatenate([p.embeddings for p in parts]),
      attributes=[a for p in parts for a in p.attributes],
      meta=dict(parts[0].meta if meta is None else meta))
