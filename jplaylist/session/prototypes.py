"""Interest prototypes of a library, for the session simulator.

A prototype is one interest or mood a listener can be in: a unit centre in the
embedding space, the text embedding of the request naming it ("switch to sad
jazz"), and its name. `make_prototypes` finds them by k-means (`kmeans`, in
JAX, checked against scikit-learn) or as attribute combinations.
"""

from __future__ import annotations

import collections
import functools
from typing import Any, Callable, NamedTuple, Sequence

import flax.struct
import jax
import jax.numpy as jnp
import numpy as np
from jax import lax

from jplaylist.session.library import Library, normalize

# Attributes that name a prototype, in the order a request phrases them
# ("switch to sad Baroque chorale"); those a library lacks are ignored.
NAME_ATTRIBUTES = ("mood", "tempo_class", "style", "genre", "instrument_families")


class KMeansResult(NamedTuple):
  centres: jax.Array     # [K, d]
  assignment: jax.Array  # [N] int32
  inertia: jax.Array     # [] sum of squared distances to the assigned centre


def _squared_distances(points, centres):
  return jnp.maximum(jnp.sum(points**2, -1)[:, None] - 2.0 * points @ centres.T
                     + jnp.sum(centres**2, -1)[None], 0.0)


def _kmeans_once(rng, points, num_clusters, num_iterations):
  init_key, loop_key = jax.random.split(rng)
  first = points[jax.random.randint(init_key, (), 0, points.shape[0])]
  centres = jnp.zeros((num_clusters, points.shape[1]), points.dtype).at[0].set(first)

  # Greedy k-means++ (as scikit-learn): of 2 + log K candidates drawn with
  # probability ~ D(x)^2, keep the one that lowers the inertia most.
  num_candidates = 2 + int(np.log(num_clusters))

  def add_centre(i, carry):
    centres, min_d2 = carry
    logits = jnp.where(min_d2 > 0, jnp.log(jnp.maximum(min_d2, 1e-30)), -jnp.inf)
    candidates = jax.random.categorical(jax.random.fold_in(loop_key, i), logits,
                                        shape=(num_candidates,))
    d2 = jnp.minimum(min_d2, _squared_distances(points, points[candidates]).T)  # [C, N]
    best = jnp.argmin(jnp.sum(d2, -1))
    return centres.at[i].set(points[candidates[best]]), d2[best]

  centres, _ = lax.fori_loop(1, num_clusters, add_centre,
                             (centres, jnp.sum((points - first)**2, -1)))

  def lloyd(centres, _):
    assignment = jnp.argmin(_squared_distances(points, centres), -1)
    sums = jax.ops.segment_sum(points, assignment, num_clusters)
    counts = jax.ops.segment_sum(jnp.ones(points.shape[0]), assignment, num_clusters)
    # An emptied cluster keeps its centre rather than becoming NaN.
    return jnp.where(counts[:, None] > 0, sums / jnp.maximum(counts, 1)[:, None], centres), None

  centres, _ = lax.scan(lloyd, centres, None, length=num_iterations)
  distances = _squared_distances(points, centres)
  assignment = jnp.argmin(distances, -1).astype(jnp.int32)
  return KMeansResult(centres, assignment, jnp.sum(jnp.min(distances, -1)))


@functools.partial(jax.jit, static_argnames=("num_clusters", "num_iterations", "num_init"))
def kmeans(rng, points, num_clusters: int, *, num_iterations: int = 30,
           num_init: int = 5) -> KMeansResult:
  """Euclidean k-means: greedy k-means++ seeding, a fixed number of Lloyd steps.

  Deterministic given `rng`; the best (lowest inertia) of `num_init` runs.

  Args:
    points: [N, d] float32.
    num_clusters: K <= N.
  """
  runs = jax.vmap(lambda key: _kmeans_once(key, points, num_clusters, num_iterations))(
      jax.random.split(rng, num_init))
  return jax.tree.map(lambda x: x[jnp.argmin(runs.inertia)], runs)


@flax.struct.dataclass
class Prototypes:
  """K interests.

  Attributes:
    centres: [K, d] float32 L2-normalised centres.
    text: [K, d] float32 L2-normalised text embeddings of the request naming
      each prototype (`request_texts`); synthetic (centre + noise) until
      `with_text_embeddings` puts a text tower's in.
    names: K names made of attribute values ("sad jazz"), or "cluster k".
    descriptions: per prototype, the (attribute, value) pairs of its name.
  """
  centres: jax.Array
  text: jax.Array
  names: tuple[str, ...] = flax.struct.field(pytree_node=False)
  descriptions: tuple[tuple[tuple[str, str], ...], ...] = flax.struct.field(pytree_node=False)

  @property
  def num_prototypes(self) -> int:
    return self.centres.shape[0]


def _name_attributes(library: Library, names: Sequence[str] | None) -> list[str]:
  if names is None:
    present = [n for n in NAME_ATTRIBUTES if n in library.attributes]
    return present or list(library.attributes)
  return [n for n in names if n in library.attributes]


def _describe(library, members: Sequence[np.ndarray], attribute_names, min_share):
  """Per prototype, the attribute values shared by at least `min_share` of its tracks."""
  descriptions = []
  for index in members:
    pairs = []
    for name in attribute_names:
      values = library.attributes[name][index]
      values = values[values != ""]
      if len(values):
        value, count = collections.Counter(values.tolist()).most_common(1)[0]
        if count >= min_share * len(index):
          pairs.append((name, value))
    descriptions.append(tuple(pairs))
  return descriptions


def make_prototypes(rng, library: Library, num_prototypes: int = 32, *, method: str = "kmeans",
                    attribute_names: Sequence[str] | None = None, min_tracks: int = 10,
                    min_share: float = 0.5, text_noise: float = 0.7,
                    num_iterations: int = 30, num_init: int = 5) -> Prototypes:
  """Interest prototypes of a library.

  Args:
    rng: key (k-means seeding and the synthetic text embeddings).
    library: the tracks.
    num_prototypes: K; with method "attributes" the K most frequent
      combinations (fewer if fewer have `min_tracks` tracks).
    method: "kmeans" (clusters of the embeddings, named by the attribute values
      at least `min_share` of their tracks share) or "attributes" (one
      prototype per combination of `attribute_names` values; the centre is the
      normalised mean embedding of its tracks).
    attribute_names: "attributes": which attributes combine (required);
      "kmeans": which name a cluster (default: those of NAME_ATTRIBUTES present).
    text_noise: synthetic text embedding = normalize(centre + text_noise * u),
      u a random unit vector (cosine to the centre (1 + text_noise^2)^-1/2).
  """
  kmeans_key, text_key = jax.random.split(rng)
  embeddings = np.asarray(library.embeddings)
  if method == "kmeans":
    if not 0 < num_prototypes <= library.num_tracks:
      raise ValueError(f"num_prototypes={num_prototypes}: need 1..{library.num_tracks}")
    result = kmeans(kmeans_key, library.embeddings, num_prototypes,
                    num_iterations=num_iterations, num_init=num_init)
    centres = normalize(result.centres)
    assignment = np.asarray(result.assignment)
    members = [np.flatnonzero(assignment == k) for k in range(num_prototypes)]
    descriptions = _describe(library, members, _name_attributes(library, attribute_names),
                             min_share)
  elif method == "attributes":
    if not attribute_names or any(n not in library.attributes for n in attribute_names):
      raise ValueError(f"attribute_names={attribute_names}: give attributes of the library "
                       f"({sorted(library.attributes)})")
    combos = collections.defaultdict(list)
    for i, combo in enumerate(zip(*(library.attributes[n] for n in attribute_names))):
      if "" not in combo:
        combos[combo].append(i)
    frequent = sorted((c for c in combos if len(combos[c]) >= min_tracks),
                      key=lambda c: (-len(combos[c]), c))[:num_prototypes]
    if not frequent:
      raise ValueError(f"no combination of {attribute_names} has {min_tracks} tracks")
    members = [np.asarray(combos[c]) for c in frequent]
    centres = normalize(jnp.asarray(np.stack([embeddings[m].mean(0) for m in members])))
    descriptions = [tuple(zip(attribute_names, c)) for c in frequent]
  else:
    raise ValueError(f"method={method!r}: expected 'kmeans' or 'attributes'")
  names = tuple(" ".join(v for _, v in d) or f"cluster {k}" for k, d in enumerate(descriptions))
  noise = normalize(jax.random.normal(text_key, centres.shape))
  return Prototypes(centres=centres.astype(jnp.float32),
                    text=normalize(centres + text_noise * noise).astype(jnp.float32),
                    names=names, descriptions=tuple(descriptions))


def request_texts(prototypes: Prototypes, template: str = "switch to {}") -> list[str]:
  """The request a listener makes when switching to each prototype: K strings."""
  return [template.format(name) for name in prototypes.names]


def with_text_embeddings(prototypes: Prototypes, embed_text: Callable[[list[str]], Any],
                         template: str = "switch to {}") -> Prototypes:
  """Prototypes whose `text` is `embed_text(request_texts(...))` ([K, d]).

  `embed_text` is e.g. `jplaylist.inference.load(workdir).embed_text`.
  """
  text = np.asarray(embed_text(request_texts(prototypes, template)), np.float32)
  if text.shape != prototypes.centres.shape:
    raise ValueError(f"embed_text returned {text.shape}, expected {prototypes.centres.shape}")
  return prototypes.replace(text=normalize(jnp.asarray(text)))
