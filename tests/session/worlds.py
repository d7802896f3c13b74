"""Small calibrated simulator worlds shared by the session tests."""

import jax

from jplaylist.session import simulator


def calibrated_world(*, num_tracks: int, num_events: int, playlist_length: int,
                     calibration_sessions: int) -> simulator.World:
  """A synthetic library of `num_tracks` (d=16, 6 clusters), 8 k-means prototypes,
  frequent mood switches, calibrated to the default shuffle skip rates."""
  key = jax.random.key(0)
  library = simulator.synthetic_library(key, num_tracks, 16, 6)
  prototypes = simulator.make_prototypes(key, library, 8)
  config = simulator.SimConfig(num_events=num_events, playlist_length=playlist_length,
                               bag_size=4, active_per_session=3, switch_probability=0.25,
                               num_prototypes=8)
  world = simulator.make_world(key, library, prototypes, config)
  return world.replace(config=simulator.calibrate(key, world,
                                                  num_sessions=calibration_sessions))
