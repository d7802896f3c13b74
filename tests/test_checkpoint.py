"""Checkpoints: per-shard input states, the saved-config check on resume, stop requests."""

import json
import os
import signal

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import pytest

from jplaylist import checkpoint as checkpoint_lib
from jplaylist.trainers import preemption


def _json_round_trip(config):
  return json.loads(json.dumps(config.to_dict()))


def _config():
  config = ml_collections.ConfigDict()
  config.seed = 0
  config.num_train_steps = 100
  config.log_every = 10
  config.mesh = (("data", -1),)
  config.optimizer = ml_collections.ConfigDict(dict(learning_rate=1e-3, freeze=()))
  config.model = ml_collections.ConfigDict(dict(
      audio_tower="resnet", specaugment=dict(num_time_masks=2)))
  config.input = ml_collections.ConfigDict(dict(batch_size=8, num_shards=0,
                                                source_weights={"SF": 2.0}))
  config.evals = ml_collections.ConfigDict(dict(zero_shot=dict(every=200)))
  config.targets = (dict(metric="a", at_least=0.5),)
  return config


def test_a_json_round_trip_is_no_change():
  config = _config()
  saved = _json_round_trip(config)
  assert isinstance(saved["mesh"][0], list)  # tuples come back as lists
  assert checkpoint_lib.config_changes(saved, config) == []
  assert checkpoint_lib.check_config_change(saved, config) == []


def test_changes_are_named_by_dotted_path_nested_added_and_removed():
  saved = _json_round_trip(_config())
  new = _config()
  new.optimizer.learning_rate = 1e-2
  new.model.specaugment.num_time_masks = 3
  new.input.source_weights["SF"] = 1.0
  new.optimizer.freeze = (("^text/", 10),)
  new.loss = ml_collections.ConfigDict(dict(kind="clip"))     # added section
  del new.input["num_shards"]                                  # removed field
  new.model.new_field = True                                   # added field
  assert checkpoint_lib.config_changes(saved, new) == [
      ("input.num_shards", 0, "(absent)"),
      ("input.source_weights.SF", 2.0, 1.0),
      ("loss", "(absent)", {"kind": "clip"}),
      ("model.new_field", "(absent)", True),
      ("model.specaugment.num_time_masks", 2, 3),
      ("optimizer.freeze", [], [["^text/", 10]]),
      ("optimizer.learning_rate", 1e-3, 1e-2),
  ]


def test_run_changing_fields_are_refused_with_every_name_old_and_new():
  saved = _json_round_trip(_config())
  new = _config()
  new.optimizer.learning_rate = 1e-2
  new.seed = 1
  new.input.batch_size = 16
  with pytest.raises(checkpoint_lib.ConfigChangedError) as error:
    checkpoint_lib.check_config_change(saved, new, where="step 4 in /w")
  message = str(error.value)
  assert "step 4 in /w" in message
  for line in ("optimizer.learning_rate: 0.001 -> 0.01", "seed: 0 -> 1",
               "input.batch_size: 8 -> 16"):
    assert line in message, message
  assert "--allow_config_change=input.batch_size,optimizer.learning_rate,seed" in message


def test_allowed_fields_by_default_and_by_name_parent_or_pattern():
  saved = _json_round_trip(_config())
  new = _config()
  # Default-allowed: length, logging, layout, evals (a nested change), targets.
  new.num_train_steps = 10
  new.log_every = 1
  new.mesh = (("data", 2),)
  new.evals.zero_shot.every = 50
  new.targets = ()
  assert [c[0] for c in checkpoint_lib.check_config_change(saved, new)] == [
      "evals.zero_shot.every", "log_every", "mesh", "num_train_steps", "targets"]
  new.optimizer.learning_rate = 1e-2
  new.model.specaugment.num_time_masks = 0
  for allow in (["optimizer.learning_rate", "model.specaugment.num_time_masks"],
                ["optimizer", "model"], ["optimizer.*", "model.spec*"]):
    changes = checkpoint_lib.check_config_change(saved, new, allow=allow)
    assert len(changes) == 7
  # A parent name is not a prefix of a sibling's name.
  with pytest.raises(checkpoint_lib.ConfigChangedError, match="learning_rate"):
    checkpoint_lib.check_config_change(saved, new, allow=["optimizer.learning",
                                                          "model"])


def test_fields_added_since_the_checkpoint_pass_only_when_off():
  saved = _json_round_trip(_config())
  new = _config()
  new.model.audio_new_option = 0
  new.optimizer.new_flag = False
  assert [c[0] for c in checkpoint_lib.check_config_change(saved, new)] == [
      "model.audio_new_option", "optimizer.new_flag"]
  new.model.audio_new_option = 16
  with pytest.raises(checkpoint_lib.ConfigChangedError,
                     match=r"model.audio_new_option: '\(absent\)' -> 16"):
    checkpoint_lib.check_config_change(saved, new)
  # A field missing from the saved config with a value that is not off is
  # refused, whatever the reason it is missing.
  del saved["input"]["batch_size"]
  new.model.audio_new_option = 0
  with pytest.raises(checkpoint_lib.ConfigChangedError, match=r"input.batch_size: '\(absent\)' -> 8"):
    checkpoint_lib.check_config_change(saved, new)


def _tiny_state(value):
  return {"w": jnp.full([4], value, jnp.float32), "step": jnp.asarray(3, jnp.int32)}


def test_input_states_are_saved_and_restored_per_shard(tmp_path):
  checkpointer = checkpoint_lib.Checkpointer(str(tmp_path), save_interval_steps=2)
  config = _config()
  assert checkpointer.save(2, _tiny_state(1.0), {0: b'{"a": 0}', 1: b'{"a": 1}'}, 2, config)
  assert not checkpointer.save(3, _tiny_state(2.0), {0: b"x", 1: b"y"}, 2, config)
  checkpointer.close()
  step_dir = tmp_path / "checkpoints" / "2"
  assert sorted(f for f in os.listdir(step_dir / checkpoint_lib.INPUT_ITEM)
                if f.endswith(".json")) == [
      "shard_0-of-2.json", "shard_1-of-2.json"]
  checkpointer = checkpoint_lib.Checkpointer(str(tmp_path))
  abstract = jax.eval_shape(lambda: _tiny_state(0.0))
  state, states, saved = checkpointer.restore(abstract, [1], 2)
  np.testing.assert_array_equal(state["w"], np.ones(4))
  assert states == [b'{"a": 1}']
  assert checkpointer.restore(abstract, [1, 0], 2)[1] == [b'{"a": 1}', b'{"a": 0}']
  assert saved == checkpointer.saved_config() == _json_round_trip(config)
  with pytest.raises(FileNotFoundError, match="another number of input shards"):
    checkpointer.restore(abstract, [0], 1)
  checkpointer.close()


def test_stop_request_on_one_process_stops_at_once_and_restores_handlers():
  before = signal.getsignal(signal.SIGTERM)
  with preemption.StopRequest() as stop:
    assert not stop.should_stop(1)
    os.kill(os.getpid(), signal.SIGTERM)
    assert stop.should_stop(2) and stop.stopped
    assert stop.reason == "signal SIGTERM"
    os.kill(os.getpid(), signal.SIGTERM)  # a second SIGTERM is ignored
  assert signal.getsignal(signal.SIGTERM) is before
  with pytest.raises(ValueError, match="preemption_check_every"):
    preemption.StopRequest(check_every=0)


def test_a_checkpoint_from_before_per_shard_states_resumes_on_one_process(tmp_path):
  import orbax.checkpoint as ocp  # the old layout, written as the old code did
  manager = ocp.CheckpointManager(str(tmp_path / "checkpoints"))
  manager.save(2, args=ocp.args.Composite(
      state=ocp.args.StandardSave(_tiny_state(5.0)),
      input=ocp.args.JsonSave({"iterators": ['{"a": 7}']}),
      config=ocp.args.JsonSave(_config().to_dict())), force=True)
  manager.wait_until_finished()
  manager.close()
  checkpointer = checkpoint_lib.Checkpointer(str(tmp_path))
  state, states, _ = checkpointer.restore(jax.eval_shape(lambda: _tiny_state(0.0)), [0], 1)
  checkpointer.close()
  np.testing.assert_array_equal(state["w"], np.full(4, 5.0))
  assert states == [b'{"a": 7}']
