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


@dataclasses.dataclass(frozen=True)
class OntologyClass:
  id: str
  name: str
  description: str
  child_ids: tuple[str, ...]


def default_path() -> str:
  """Where the ontology file is; raises FileNotFoundError naming the places tried."""
  candidates = []
  if os.environ.get(ENV_VAR):
    candidates.append(os.environ[ENV_VAR])
  repo = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
  candidates.append(os.path.join(os.path.dirname(repo), "shared", "data", _FILE))
  candidates.append(os.path.join(repo, "shared", "data", _FILE))
  for path in candidates:
    if os.path.isfile(path):
      return path
  raise FileNotFoundError(
      f"AudioSet music ontology not found (tried: {', '.join(candidates)}). "
      f"Set ${ENV_VAR} or pass its path.")


def load(path: str | None = None) -> list[OntologyClass]:
  with open(path or default_path(), encoding="utf-8") as f:
    return [OntologyClass(e["id"], e["name"], e.get("description", ""),
                          tuple(e.get("child_ids", ()))) for e in json.load(f)]


def names(path: str | None = None) -> set[str]:
  return {c.name for c in load(path)}
