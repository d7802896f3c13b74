"""Writes default_records.npz: today's adaptive records, before learned mix rankers.

  PYTHONPATH=<a checkout without jplaylist/session/long_term.py> \
      python tests/session/data/default_records.py tests/session/data/default_records.npz

tests/session/test_long_term.py checks that the study with its default mix
ranker (the background direction) still serves exactly these tracks.
"""

import sys

import jax
import numpy as np

from jplaylist.session import simulator
from jplaylist.session import study


def world_and_plan():
  """A small uncalibrated synthetic world and 4 sessions with 2 earlier sessions each."""
  key = jax.random.key(0)
  library = simulator.synthetic_library(key, 200, 16, 6)
  prototypes = simulator.make_prototypes(key, library, 6)
  config = simulator.SimConfig(num_events=6, playlist_length=15, bag_size=3,
                               active_per_session=2, switch_probability=0.3,
                               num_prototypes=6, history_sessions=2)
  world = simulator.make_world(key, library, prototypes, config)
  return world, simulator.sample_sessions(jax.random.key(1), 4, world)


def records(world, plan, long_term=None):
  """served tracks and probabilities of adaptive and adaptive_mlp, playlist candidates."""
  spec = study.StudySpec(strategies=("adaptive", "adaptive_mlp"), ranking_metrics=False,
                         sessions_per_chunk=4)
  kwargs = {} if long_term is None else dict(long_term=long_term)
  out = study.run(world, plan, spec, jax.random.key(3), log=lambda _: None, **kwargs)
  return {"track": out["track"], "served_prob": out["served_prob"], "auc": out["auc"]}


if __name__ == "__main__":
  np.savez(sys.argv[1], **records(*world_and_plan()))
