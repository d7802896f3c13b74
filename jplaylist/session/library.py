"""Track libraries for the session simulator (`jplaylist.session.simulator`).

`Library`: L2-normalised embeddings [N, d], popularity, durations, and
host-side ids and categorical attributes. `synthetic_library` draws clusters on
the sphere with "genre" and "mood" labels (tests and benchmarks);
`library_from_index` reads an index written by launch/embed.py. The listener
models read the attributes (`listeners`, listener "attributes"); nothing else
in the simulator needs them.
"""

from __future__ import annotations

import dataclasses
import functools
from typing import Any, Sequence

import flax.struct
import jax
import jax.numpy as jnp
import numpy as np

SYNTHETIC_GENRES = ("jazz", "rock", "classical", "hip hop", "electronic", "folk", "blues",
                    "reggae", "metal", "pop", "soul", "country", "latin", "ambient", "punk",
                    "funk")
SYNTHETIC_MOODS = ("happy", "sad", "calm", "energetic", "dark", "romantic", "dreamy", "angry")


def normalize(x, axis=-1):
  """x / |x| along `axis` (0 stays 0)."""
  return x / jnp.maximum(jnp.linalg.norm(x, axis=axis, keepdims=True), 1e-12)


@dataclasses.dataclass(frozen=True, eq=False)
class LibraryInfo:
  """Host-side metadata; hashed by identity so a Library can be a jit argument.

  ids: N track ids. attributes: name -> [N] str array, "" where unknown.
  """
  ids: tuple[str, ...]
  attributes: dict[str, np.ndarray]

  @functools.cached_property
  def row_of(self) -> dict[str, int]:
    """id -> row, built once per library and shared by every session over it."""
    return {track: row for row, track in enumerate(self.ids)}


@flax.struct.dataclass
class Library:
  """Tracks of a music collection.

  Attributes:
    embeddings: [N, d] float32 L2-normalised audio embeddings.
    popularity: [N] float32 play share, sums to 1.
    duration_s: [N] float32 track lengths in seconds.
    info: host-side ids and attributes.
  """
  embeddings: jax.Array
  popularity: jax.Array
  duration_s: jax.Array
  info: LibraryInfo = flax.struct.field(pytree_node=False)

  @property
  def num_tracks(self) -> int:
    return self.embeddings.shape[0]

  @property
  def attributes(self) -> dict[str, np.ndarray]:
    return self.info.attributes


def _zipf_popularity(num_tracks: int, exponent: float, seed: int) -> np.ndarray:
  rank = np.random.default_rng(seed).permutation(num_tracks)
  weight = (rank + 1.0) ** -exponent
  return (weight / weight.sum()).astype(np.float32)


def synthetic_library(rng, num_tracks: int = 10_000, dim: int = 128,
                      num_clusters: int = 16, *, num_moods: int = 4, spread: float = 1.0,
                      mood_strength: float = 0.6, zipf_exponent: float = 1.0) -> Library:
  """Clustered tracks on the sphere with "genre" and "mood" labels.

  e = normalize(genre centre + mood_strength * mood direction + spread * noise),
  centres, directions and noise of unit norm, so a track's cosine to its genre
  centre is about (1 + mood_strength^2 + spread^2)^-1/2 (0.65 by default).
  Genre sizes are Dirichlet(2); popularity is Zipf over a random order;
  durations log-normal around 3.5 minutes.
  """
  # numpy on the host: a handful of one-off draws that would each compile in JAX.
  host = np.random.default_rng(int(jax.random.randint(rng, (), 0, 2**31 - 1)))
  unit = lambda x: x / np.linalg.norm(x, axis=-1, keepdims=True)
  centres = unit(host.standard_normal((num_clusters, dim)))
  moods = unit(host.standard_normal((num_moods, dim)))
  genre = host.choice(num_clusters, num_tracks, p=host.dirichlet(np.full(num_clusters, 2.0)))
  mood = host.integers(0, num_moods, num_tracks)
  noise = unit(host.standard_normal((num_tracks, dim)))
  embeddings = unit(centres[genre] + mood_strength * moods[mood] + spread * noise)
  genre_names = np.array([SYNTHETIC_GENRES[i] if i < len(SYNTHETIC_GENRES) else f"genre {i}"
                          for i in range(num_clusters)])
  mood_names = np.array([SYNTHETIC_MOODS[i] if i < len(SYNTHETIC_MOODS) else f"mood {i}"
                         for i in range(num_moods)])
  return Library(
      embeddings=jnp.asarray(embeddings, jnp.float32),
      popularity=jnp.asarray(_zipf_popularity(num_tracks, zipf_exponent, host.integers(2**31))),
      duration_s=jnp.asarray(210.0 * np.exp(0.3 * host.standard_normal(num_tracks)), jnp.float32),
      info=LibraryInfo(ids=tuple(f"track-{i}" for i in range(num_tracks)),
                       attributes={"mood": mood_names[mood], "genre": genre_names[genre]}))


def _attribute_value(value: Any) -> str:
  if isinstance(value, (list, tuple)):  # e.g. instrument_families: the first (lead part)
    value = value[0] if value else None
  return "" if value is None else str(value)


def library_from_index(index, *, attribute_names: Sequence[str] | None = None,
                       popularity: np.ndarray | None = None, zipf_exponent: float = 1.0,
                       seed: int = 0, max_values: int = 64,
                       default_duration_s: float = 210.0) -> Library:
  """A Library from a `jplaylist.library_index.LibraryIndex`.

  Args:
    index: the index (ids, embeddings [N, d], attributes, meta).
    attribute_names: attributes to keep; default every one whose values are
      strings (or lists of strings) with at most `max_values` distinct values.
      A list value keeps its first item ("instrument_families" -> the family of
      the highest part); a missing value is "".
    popularity: [N] play counts or shares; default Zipf(`zipf_exponent`) over a
      random order drawn with `seed` (the demo corpus has no play counts).
    default_duration_s: length of tracks without a numeric "duration_s".
  """
  num_tracks = len(index)
  if num_tracks == 0:
    raise ValueError("library_from_index: the index has no tracks")
  keep_all = attribute_names is not None
  if not keep_all:  # categorical: string (or list of string) values
    is_text = lambda v: v is None or isinstance(v, str) or (
        isinstance(v, (list, tuple)) and all(isinstance(i, str) for i in v))
    names = dict.fromkeys(key for record in index.attributes for key in record)
    attribute_names = [k for k in names if all(is_text(r.get(k)) for r in index.attributes)]
  attributes = {}
  for key in attribute_names:
    values = np.array([_attribute_value(r.get(key)) for r in index.attributes], dtype=str)
    if keep_all or len(set(values.tolist()) - {""}) <= max_values:
      attributes[key] = values
  durations = np.array([r.get("duration_s") if isinstance(r.get("duration_s"), (int, float))
                        else default_duration_s for r in index.attributes], np.float32)
  if popularity is None:
    popularity = _zipf_popularity(num_tracks, zipf_exponent, seed)
  popularity = np.asarray(popularity, np.float64)
  if popularity.shape != (num_tracks,) or np.any(popularity < 0) or popularity.sum() <= 0:
    raise ValueError(f"popularity: expected [{num_tracks}] non-negative values, not all 0")
  return Library(embeddings=normalize(jnp.asarray(index.embeddings, jnp.float32)),
                 popularity=jnp.asarray(popularity / popularity.sum(), jnp.float32),
                 duration_s=jnp.asarray(durations),
                 info=LibraryInfo(ids=tuple(index.ids), attributes=attributes))


def attribute_one_hot(library: Library, names: Sequence[str]
                      ) -> tuple[np.ndarray, tuple[tuple[str, str], ...]]:
  """One-hot codes of categorical attributes: ([N, F] float32, F (name, value) pairs).

  Each attribute contributes one column per distinct non-empty value, so a track
  has a 1 for each attribute it has a value for ("" = unknown: all 0).

  Raises:
    ValueError: naming every attribute in `names` the library lacks (and those it
      has), or when the attributes have no values at all.
  """
  missing = [name for name in names if name not in library.attributes]
  if missing:
    raise ValueError(f"the library has no attribute(s) {missing}; it has "
                     f"{sorted(library.attributes)}")
  columns, labels = [], []
  for name in names:
    values = library.attributes[name]
    for value in sorted(set(values.tolist()) - {""}):
      columns.append(values == value)
      labels.append((name, value))
  if not columns:
    raise ValueError(f"attributes {list(names)} have no values in this library")
  return np.stack(columns, axis=1).astype(np.float32), tuple(labels)
