r"""The patent's flute example on a library index, over every session of its kind.

  python -m launch.embed --workdir=workdirs/demo --dataset=data/music_text/demo/1.0.0 \
      --split=train,validation,test --output=/tmp/demo_library.npz
  python -m bench.flute_example --index=/tmp/demo_library.npz

WO2024043931A1's worked example: a listener plays flute-with-strings pieces
and skips a flute-with-piano one; the remaining solo-flute and
flute-with-strings pieces should then rank above the flute-with-piano ones.
Here the library is the index's recordings of those three ensembles; every
session listens to two flute-with-strings recordings and skips one
flute-with-piano recording early (all pairs times all skips), then ranks the rest
through `jplaylist.session.live` with each --strategies entry at its default
settings. Printed per strategy: sessions, the mean and smallest AUC of the
ranking (wanted = not flute with piano), the share of sessions with AUC
above 0.5, and the share where the wanted tracks' mean score is higher.
Requests are not used, so no text tower is needed. --save writes the
three-ensemble subset as an index (tests/session/data/demo_flute.npz).
"""

import itertools

from absl import app
from absl import flags
import numpy as np
from sklearn.metrics import roc_auc_score

from jplaylist import library_index
from jplaylist.session import examples
from jplaylist.session import library as library_lib
from jplaylist.session import live
from jplaylist.session import strategies

_INDEX = flags.DEFINE_string("index", None, "A library index with `ensemble` attributes.")
_STRATEGIES = flags.DEFINE_list("strategies", [strategies.DEFAULT_STRATEGY, "adaptive"],
                                "Session strategies to run.")
_SAVE = flags.DEFINE_string("save", None, "Write the three-ensemble subset here.")
flags.mark_flag_as_required("index")

ENSEMBLES = ("solo flute", "flute with strings", "flute with piano")
KEPT_ATTRIBUTES = ("ensemble", "instruments", "style", "split", "duration_s", "soundfont",
                   "title")
# The skip comes this share of the way into the track: an early skip (a kind
# SKIP needs under 5% played, `examples.play_kind`; more is a partial play).
SKIP_AT = 0.02


def flute_subset(index: library_index.LibraryIndex) -> library_index.LibraryIndex:
  keep = [i for i, a in enumerate(index.attributes) if a.get("ensemble") in ENSEMBLES]
  if not keep:
    raise ValueError(f"no recording in the index has an ensemble among {ENSEMBLES}")
  return library_index.LibraryIndex(
      ids=[index.ids[i] for i in keep], embeddings=index.embeddings[keep],
      attributes=[{k: index.attributes[i][k] for k in KEPT_ATTRIBUTES
                   if k in index.attributes[i]} for i in keep],
      meta=index.meta)


def run(index: library_index.LibraryIndex, strategy: str) -> dict[str, float]:
  """Every two-listens-one-skip session of the example; summary figures."""
  library = library_lib.library_from_index(index)
  ensemble = np.array([a["ensemble"] for a in index.attributes])
  ids = library.info.ids

  def no_requests(texts):
    raise ValueError(f"the flute example makes no requests, got {texts!r}")

  strings = np.flatnonzero(ensemble == "flute with strings")
  piano = np.flatnonzero(ensemble == "flute with piano")
  aucs, mean_above = [], []
  for (a, b), c in itertools.product(itertools.combinations(strings, 2), piano):
    session = live.LiveSession(library, no_requests, strategy=strategy,
                               max_examples=8).start()
    session.listened(ids[a])
    session.listened(ids[b])
    kind = session.skipped(ids[c], SKIP_AT * float(library.duration_s[c]))
    assert kind == examples.SKIP, kind
    ranked = session.next(len(ids))
    order = [ids.index(t) for t, _ in ranked]
    wanted = ensemble[order] != "flute with piano"
    scores = np.array([s for _, s in ranked])
    aucs.append(roc_auc_score(wanted, -np.arange(len(order))))
    mean_above.append(scores[wanted].mean() > scores[~wanted].mean())
  aucs = np.array(aucs)
  return {"sessions": len(aucs), "mean_auc": float(aucs.mean()), "min_auc": float(aucs.min()),
          "share_above_half": float((aucs > 0.5).mean()),
          "share_mean_score_above": float(np.mean(mean_above))}


def main(argv):
  del argv
  index = flute_subset(library_index.load(_INDEX.value))
  counts = {e: sum(a["ensemble"] == e for a in index.attributes) for e in ENSEMBLES}
  print(f"{len(index.ids)} recordings: " + ", ".join(f"{e} {n}" for e, n in counts.items()))
  if _SAVE.value:
    index.save(_SAVE.value)
    print(f"subset written to {_SAVE.value}")
  for strategy in _STRATEGIES.value:
    r = run(index, strategy)
    print(f"{strategy:>10}: {r['sessions']} sessions, mean AUC {r['mean_auc']:.3f} "
          f"(smallest {r['min_auc']:.3f}), AUC > 0.5 in {r['share_above_half']:.0%}, "
          f"wanted mean score higher in {r['share_mean_score_above']:.0%}")


if __name__ == "__main__":
  app.run(main)
