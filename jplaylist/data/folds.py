"""K-fold cross-validation splits of a built dataset, grouped by composition.

A fold split is a split name every reader of a built dataset understands
(`builder.open_split`, hence the input pipeline and every trainer):

  "train+validation+test:fold3of10:train"   the pool's records outside fold 3
  "train+validation+test:fold3of10:test"    the pool's records in fold 3

The pool is one or more of the dataset's splits joined with "+", in that
order. Records are grouped by an attribute (the demo corpus's `composition`:
every rendition of a piece lands in one fold, so no fold tests a piece its
model heard in another rendition); a record without it is its own group. The
groups, sorted by name, are shuffled by a fixed seed and dealt to the folds in
turn, so fold sizes differ by at most one group and the assignment depends
only on the pool's attributes.
"""

from __future__ import annotations

import dataclasses
import json
import re
import zlib
from typing import Any, Sequence

import numpy as np

GROUP_ATTRIBUTE = "composition"
SEED = 0
_PATTERN = re.compile(r"^(?P<pool>[\w+-]+):fold(?P<fold>\d+)of(?P<folds>\d+):(?P<part>train|test)$")


@dataclasses.dataclass(frozen=True)
class FoldSplit:
  pool: tuple[str, ...]
  fold: int
  num_folds: int
  part: str                 # "train" (every other fold) or "test" (this fold)

  def __post_init__(self):
    if self.num_folds < 2:
      raise ValueError(f"cross-validation needs at least 2 folds, not {self.num_folds}")
    if not 0 <= self.fold < self.num_folds:
      raise ValueError(f"fold {self.fold} not in [0, {self.num_folds})")
    if self.part not in ("train", "test"):
      raise ValueError(f"fold part {self.part!r}: 'train' or 'test'")
    if not self.pool or len(set(self.pool)) != len(self.pool):
      raise ValueError(f"fold pool {self.pool}: one or more distinct splits")

  @property
  def name(self) -> str:
    return f"{'+'.join(self.pool)}:fold{self.fold}of{self.num_folds}:{self.part}"


def split_name(pool: Sequence[str], fold: int, num_folds: int, part: str) -> str:
  """The split name of one part of one fold (checked)."""
  return FoldSplit(tuple(pool), fold, num_folds, part).name


def parse(split: str) -> FoldSplit | None:
  """The fold split a name stands for; None for a plain split name."""
  if ":" not in split:
    return None
  match = _PATTERN.match(split)
  if match is None:
    raise ValueError(f"split {split!r} is neither a split of the dataset nor a fold "
                     "split like 'train+validation+test:fold3of10:train'")
  return FoldSplit(tuple(match["pool"].split("+")), int(match["fold"]),
                   int(match["folds"]), match["part"])


def _group(attributes: bytes | str, record_id: bytes | str) -> str:
  text = attributes.decode() if isinstance(attributes, bytes) else attributes
  value = json.loads(text).get(GROUP_ATTRIBUTE) if text else None
  if value is None:
    return "id:" + (record_id.decode() if isinstance(record_id, bytes) else str(record_id))
  return "group:" + str(value)


def assign(groups: Sequence[str], num_folds: int, seed: int = SEED) -> np.ndarray:
  """[N] fold of each record: its group's fold (groups dealt in a seeded order).

  Raises:
    ValueError: fewer groups than folds (some fold would be empty).
  """
  names = sorted(set(groups))
  if len(names) < num_folds:
    raise ValueError(f"{len(names)} groups cannot fill {num_folds} folds")
  # A fixed permutation of the sorted names: crc32 keys, ties broken by name.
  order = sorted(names, key=lambda g: (zlib.crc32(f"{seed}:{g}".encode()), g))
  fold_of = {g: i % num_folds for i, g in enumerate(order)}
  return np.asarray([fold_of[g] for g in groups], np.int32)


class FoldSource:
  """Random access to the records of one fold split (a grain data source).

  Record i of the source is record `self.positions[i]` of the joined pool
  splits, each returned as its split's source returns it.
  """

  def __init__(self, spec: FoldSplit, sources: Sequence[Any]):
    if len(sources) != len(spec.pool):
      raise ValueError("one source per pool split")
    self.spec = spec
    self._sources = list(sources)
    self._offsets = np.cumsum([0] + [len(s) for s in sources])
    groups = []
    for source in sources:
      for i in range(len(source)):
        record = source[i]
        groups.append(_group(record["attributes"], record["id"]))
    self.folds = assign(groups, spec.num_folds)
    selected = (self.folds == spec.fold) if spec.part == "test" else (self.folds != spec.fold)
    self.positions = np.flatnonzero(selected)

  def __len__(self) -> int:
    return len(self.positions)

  def __getitem__(self, index: int) -> dict[str, Any]:
    position = int(self.positions[index])
    part = int(np.searchsorted(self._offsets, position, side="right")) - 1
    return self._sources[part][position - int(self._offsets[part])]
