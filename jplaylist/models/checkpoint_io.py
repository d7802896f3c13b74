"""Reading outside checkpoints (Hugging Face, PyTorch) as numpy state dicts.

Shared by the towers' importers (`bert.load`, `ast.load`): each maps the
names of such a state dict onto its own parameter tree.
"""

from __future__ import annotations

import dataclasses
import json
import os
from typing import Any, Mapping

import numpy as np

WEIGHT_FILES = ("model.safetensors", "pytorch_model.bin")


@dataclasses.dataclass
class StateDict:
  arrays: dict[str, np.ndarray]   # name -> float array
  config: dict[str, Any] | None   # config.json beside the weights, if any
  source: str                     # the file read, or "<mapping>"


def to_numpy(value) -> np.ndarray:
  if hasattr(value, "detach"):  # a torch tensor; numpy has no bfloat16
    value = value.detach().cpu()
    if str(value.dtype) == "torch.bfloat16":
      value = value.float()
    return value.numpy()
  return np.asarray(value)


def read(path) -> StateDict:
  """Reads a mapping, a folder (model.safetensors or pytorch_model.bin), a
  .safetensors file or a PyTorch .bin/.pt/.pth state dict.

  PyTorch files need torch, which is imported only then: the library itself
  does not depend on it.
  """
  if isinstance(path, Mapping):
    return StateDict({k: to_numpy(v) for k, v in path.items()}, None, "<mapping>")
  path = os.fspath(path)
  if os.path.isdir(path):
    for name in WEIGHT_FILES:
      if os.path.isfile(os.path.join(path, name)):
        path = os.path.join(path, name)
        break
    else:
      raise FileNotFoundError(f"no {' or '.join(WEIGHT_FILES)} in {path} "
                              "(sharded checkpoints are not supported)")
  if not os.path.isfile(path):
    raise FileNotFoundError(f"checkpoint not found: {path}")
  config = None
  config_path = os.path.join(os.path.dirname(path), "config.json")
  if os.path.isfile(config_path):
    with open(config_path) as f:
      config = json.load(f)
  if path.endswith(".safetensors"):
    from safetensors.numpy import load_file  # pylint: disable=g-import-not-at-top
    return StateDict(dict(load_file(path)), config, path)
  if path.endswith((".bin", ".pt", ".pth")):
    import torch  # pylint: disable=g-import-not-at-top
    state = torch.load(path, map_location="cpu", weights_only=True)
    if not isinstance(state, Mapping):
      raise ValueError(f"{path} holds a {type(state).__name__}, not a state dict")
    return StateDict({k: to_numpy(v) for k, v in state.items()}, config, path)
  raise ValueError(f"cannot read checkpoint {path}: expected a folder, a .safetensors "
                   f"or .bin/.pt/.pth file, or a mapping of arrays")
