"""The AudioSet ontology (music subtree): class names and descriptions.

The demo corpus draws its ASET text source from these class names, and the
text-triplet evaluation uses the descriptions. The file is not shipped inside
the package; `default_path()` finds it from `$JPLAYLIST_ONTOLOGY` or, in a
checkout of this project, at `../shared/data/audioset_music_ontology.json`
beside the repository.
"""

from __future__ import annotations

import dataclasses
import json
import os

ENV_VAR = "JPLAYLIST_ONTOLOGY"
_FILE = "audioset_music_ontology.json"
_FULL_FILE = "audioset_ontology.json"  # all 632 classes (the text filter's negatives)


@dataclasses.dataclass(frozen=True)
class OntologyClass:
  id: str
  name: str
  description: str
  child_ids: tuple[str, ...]


def default_path(full: bool = False) -> str:
  """Where the ontology file is; raises FileNotFoundError naming the places tried.

  full: the whole ontology (`audioset_ontology.json`, looked for beside the
    music ontology) instead of its music subtree.
  """
  name = _FULL_FILE if full else _FILE
  candidates = []
  if os.environ.get(ENV_VAR):
    env = os.environ[ENV_VAR]
    candidates.append(os.path.join(os.path.dirname(env), name) if full else env)
  repo = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
  candidates.append(os.path.join(os.path.dirname(repo), "shared", "data", name))
  candidates.append(os.path.join(repo, "shared", "data", name))
  for path in candidates:
    if os.path.isfile(path):
      return path
  raise FileNotFoundError(
      f"AudioSet {'' if full else 'music '}ontology not found (tried: "
      f"{', '.join(candidates)}). "
      f"Set ${ENV_VAR} or pass its path.")


def load(path: str | None = None) -> list[OntologyClass]:
  with open(path or default_path(), encoding="utf-8") as f:
    return [OntologyClass(e["id"], e["name"], e.get("description", ""),
                          tuple(e.get("child_ids", ()))) for e in json.load(f)]


def names(path: str | None = None) -> set[str]:
  return {c.name for c in load(path)}
