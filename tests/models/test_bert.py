"""The BERT text tower against PyTorch transformers.BertModel, and its importer.

References are independent of our code: Hugging Face's PyTorch BertModel (the
real all-MiniLM-L6-v2 checkpoint and randomly initialised configurations),
and parameter counts computed from it and from the published BERT-base size.
"""

import functools
import os
import re

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from jplaylist.data import tokenizer
from jplaylist.models import bert

# The PyTorch reference is required (requirements-test.txt, installed by
# `make test`): a parity test must fail, not skip, when it cannot run.
import torch  # noqa: E402  pylint: disable=g-import-not-at-top,wrong-import-position
import transformers  # noqa: E402  pylint: disable=g-import-not-at-top,wrong-import-position

TEXTS = [
    "a calm solo piano piece for a rainy evening",
    "energetic drum and bass with a heavy sub bass line and a soaring female vocal",
    "jazz",
    "string quartet, slow movement",
]
TINY_CONFIG = dict(hidden_size=128, num_hidden_layers=2, num_attention_heads=2,
                   intermediate_size=512)
TOLERANCE = 1e-4


@functools.lru_cache(maxsize=None)
def _encoder_apply(variant):
  return jax.jit(bert.BertEncoder(**bert.decode_variant(variant)).apply)


@functools.lru_cache(maxsize=None)
def _model_apply(variant):
  return jax.jit(bert.Model(variant).apply, static_argnames="train")


def _init(variant, ids, mask):
  return jax.jit(bert.Model(variant).init)(jax.random.key(0), ids, mask)["params"]


def _checkpoint_params(variant, checkpoint, ids, mask, embed_dim=128):
  """Model params with the encoder from a checkpoint, no random encoder init."""
  template = jax.eval_shape(bert.Model(variant, embed_dim).init, jax.random.key(0),
                            ids, mask)["params"]
  params, report = bert.load(template, checkpoint)
  hidden = bert.decode_variant(variant)["hidden_size"]
  params["projection"] = nn.Dense(embed_dim).init(
      jax.random.key(0), jnp.zeros((1, hidden)))["params"]
  return params, report


def _hf_hidden_states(hf_model, ids, mask):
  with torch.no_grad():
    out = hf_model(input_ids=torch.from_numpy(ids).long(),
                   attention_mask=torch.from_numpy(mask).long(),
                   output_hidden_states=True)
  return [h.numpy() for h in out.hidden_states]


def _max_diff_real_tokens(ours, theirs, mask):
  """Max |ours - theirs| over non-padding positions of [B, L, H] arrays."""
  real = mask.astype(bool)
  return float(np.abs(np.asarray(ours, np.float32)[real] - theirs[real]).max())


def _random_hf(config_kwargs, cls=None):
  """A seeded random HF BERT with random biases and LayerNorm params too.

  HF initialises biases to 0 and LayerNorms to identity; randomising them
  lets the parity tests catch a bias or scale wired to the wrong place.
  """
  torch.manual_seed(0)
  cls = cls or transformers.BertModel
  model = cls(transformers.BertConfig(**config_kwargs)).eval()
  with torch.no_grad():
    for name, param in model.named_parameters():
      if name.endswith("bias"):
        param.copy_(0.1 * torch.randn_like(param))
      elif "LayerNorm.weight" in name:
        param.copy_(1.0 + 0.1 * torch.randn_like(param))
  return model


def _random_batch(batch, length, lengths, seed=0):
  rng = np.random.default_rng(seed)
  ids = rng.integers(1000, 30000, (batch, length)).astype(np.int32)
  mask = (np.arange(length)[None] < np.asarray(lengths)[:, None]).astype(np.int32)
  return ids * mask, mask  # padding holds [PAD] (0), as the tokenizer gives


@pytest.fixture(scope="module")
def minilm_dir():
  return bert.default_minilm_path()  # requirements-nodeps.txt installs it


@pytest.fixture(scope="module")
def minilm(minilm_dir):
  """(Model('minilm-l6') params with the checkpoint loaded, load report, ids, mask)."""
  ids, mask = tokenizer.encode(TEXTS, max_length=32)
  params, report = _checkpoint_params("minilm-l6", minilm_dir, ids, mask)
  return params, report, ids, mask


@pytest.fixture(scope="module")
def hf_base():
  return _random_hf({})  # BertConfig() defaults: bert-base-uncased sizes


def test_minilm_matches_transformers(minilm, minilm_dir):
  params, report, ids, mask = minilm
  assert len(set(mask.sum(1))) == len(TEXTS)  # different lengths, some padding
  hf = transformers.BertModel.from_pretrained(minilm_dir).eval()
  theirs = _hf_hidden_states(hf, ids, mask)
  sequence, ours = _encoder_apply("minilm-l6")({"params": params["encoder"]}, ids, mask)
  assert len(ours) == len(theirs) == 7
  diffs = [_max_diff_real_tokens(o, t, mask) for o, t in zip(ours, theirs)]
  print("MiniLM max abs diff per hidden state:", diffs)
  assert max(diffs) < TOLERANCE, diffs
  cls_diff = np.abs(np.asarray(sequence)[:, 0] - theirs[-1][:, 0]).max()
  assert cls_diff < TOLERANCE
  assert report["ignored"] == ["embeddings.position_ids", "pooler.dense.bias",
                               "pooler.dense.weight"]
  assert report["missing"] == report["unexpected"] == []
  assert len(report["loaded"]) == 5 + 6 * 16


def test_random_base_matches_transformers_from_bin(hf_base, tmp_path):
  path = str(tmp_path / "pytorch_model.bin")
  torch.save(hf_base.state_dict(), path)
  ids, mask = _random_batch(2, 16, lengths=[16, 9])
  params, report = _checkpoint_params("base", path, ids, mask)
  os.remove(path)  # 440 MB; pytest keeps the last runs' tmp_path folders
  assert report["source"] == path
  theirs = _hf_hidden_states(hf_base, ids, mask)
  _, ours = _encoder_apply("base")({"params": params["encoder"]}, ids, mask)
  diffs = [_max_diff_real_tokens(o, t, mask) for o, t in zip(ours, theirs)]
  print("random bert-base max abs diff per hidden state:", diffs)
  assert len(ours) == 13 and max(diffs) < TOLERANCE, diffs


def test_base_parameter_count(hf_base):
  ids, mask = _random_batch(1, 8, lengths=[8])
  shapes = jax.eval_shape(bert.Model("base").init, jax.random.key(0), ids, mask)
  ours = sum(x.size for x in jax.tree.leaves(shapes["params"]["encoder"]))
  theirs = sum(p.numel() for name, p in hf_base.named_parameters()
               if not name.startswith("pooler."))
  assert ours == theirs
  # Embeddings (30522 + 512 + 2) * 768 + LayerNorm 2 * 768 = 23,837,184; per
  # layer 4 * (768^2 + 768) attention + (768 * 3072 + 3072) + (3072 * 768 + 768)
  # + 2 LayerNorms 4 * 768 = 7,087,872, times 12 = 85,054,464; total
  # 108,891,648. With the pooler (768^2 + 768 = 590,592): 109,482,240, the
  # published ~109.5M of bert-base-uncased.
  assert ours == 108_891_648
  assert 109.4e6 <= ours + 768 * 768 + 768 <= 109.6e6


def test_model_is_unit_norm_projected_cls_and_ignores_padding(minilm):
  params, _, ids, mask = minilm
  apply = _model_apply("minilm-l6")
  z = np.asarray(apply({"params": params}, ids, mask))
  assert z.shape == (len(TEXTS), 128) and z.dtype == np.float32
  np.testing.assert_allclose(np.linalg.norm(z, axis=-1), 1.0, atol=1e-5)

  # The output is the [CLS] encoder output through the projection, normalised.
  sequence, _ = _encoder_apply("minilm-l6")({"params": params["encoder"]}, ids, mask)
  projected = (np.asarray(sequence)[:, 0] @ np.asarray(params["projection"]["kernel"])
               + np.asarray(params["projection"]["bias"]))
  expected = projected / np.linalg.norm(projected, axis=-1, keepdims=True)
  np.testing.assert_allclose(z, expected, atol=1e-5)

  # Extra padding, and junk ids (not [PAD]) under the padding, change nothing.
  rng = np.random.default_rng(1)
  longer_ids = np.concatenate([ids, np.zeros((len(TEXTS), 16), np.int32)], axis=1)
  longer_mask = np.concatenate([mask, np.zeros((len(TEXTS), 16), np.int32)], axis=1)
  junk = rng.integers(1000, 30000, longer_ids.shape).astype(np.int32)
  longer_ids = np.where(longer_mask == 1, longer_ids, junk)
  z_longer = np.asarray(apply({"params": params}, longer_ids, longer_mask))
  np.testing.assert_allclose(z_longer, z, atol=1e-5)


def test_zero_projection_gives_finite_output():
  ids, mask = _random_batch(2, 8, lengths=[8, 3])
  params = _init("tiny", ids, mask)
  params["projection"] = jax.tree.map(jnp.zeros_like, params["projection"])
  z = np.asarray(_model_apply("tiny")({"params": params}, ids, mask))
  assert np.all(np.isfinite(z)) and not z.any()


@pytest.fixture(scope="module")
def tiny_pretraining():
  """A random BertForPreTraining ("bert." keys, pooler, cls.* heads) and its state."""
  hf = _random_hf(TINY_CONFIG, transformers.BertForPreTraining)
  # clone(): the MLM decoder shares storage with the word embeddings, which
  # safetensors refuses to save twice.
  state = {k: v.clone().contiguous() for k, v in hf.state_dict().items()}
  state["bert.embeddings.position_ids"] = torch.arange(512)[None]
  return hf, state


def test_tiny_pretraining_safetensors_loads_with_prefix(tiny_pretraining, tmp_path):
  from safetensors.torch import save_file  # pylint: disable=g-import-not-at-top
  hf, state = tiny_pretraining
  path = str(tmp_path / "tiny.safetensors")
  save_file(state, path)
  ids, mask = _random_batch(3, 12, lengths=[12, 5, 1])
  params, report = bert.load(_init("tiny", ids, mask), path)
  assert "bert.embeddings.position_ids" in report["ignored"]
  assert {"bert.pooler.dense.weight", "cls.predictions.bias",
          "cls.seq_relationship.weight"} <= set(report["ignored"])
  assert all(not key.startswith("bert.") for key in report["loaded"])
  theirs = _hf_hidden_states(hf.bert, ids, mask)
  _, ours = _encoder_apply("tiny")({"params": params["encoder"]}, ids, mask)
  diffs = [_max_diff_real_tokens(o, t, mask) for o, t in zip(ours, theirs)]
  assert max(diffs) < TOLERANCE, diffs


def _remat_regions(fn, *args) -> int:
  """How many rematerialised regions the jaxpr of fn(*args) holds."""
  return len(re.findall(r"= (?:remat\w*|checkpoint)\[", str(jax.make_jaxpr(fn)(*args))))


@pytest.mark.parametrize("train_layers", [-1, 1])
def test_remat_layers_import_hf_weights_and_keep_values_and_gradients(tiny_pretraining,
                                                                      train_layers):
  hf, state = tiny_pretraining
  ids, mask = _random_batch(3, 12, lengths=[12, 5, 1])
  plain = bert.Model("tiny", train_layers=train_layers)
  remat = bert.Model("tiny", train_layers=train_layers, remat=True)
  # The same parameter tree, so the same checkpoints (ours and HF's) load.
  shapes = lambda m: jax.tree.map(lambda x: (x.shape, x.dtype), jax.eval_shape(
      m.init, jax.random.key(0), ids, mask))
  assert shapes(remat) == shapes(plain)
  params, _ = bert.load(_init("tiny", ids, mask), state)
  # HF parity through the rematerialised layers.
  encoder = bert.BertEncoder(**bert.decode_variant("tiny"), remat=True)
  _, ours = jax.jit(encoder.apply)({"params": params["encoder"]}, ids, mask)
  theirs = _hf_hidden_states(hf.bert, ids, mask)
  assert max(_max_diff_real_tokens(o, t, mask) for o, t in zip(ours, theirs)) < TOLERANCE

  def loss(model, params):
    z = model.apply({"params": params}, ids, mask, train=True,
                    rngs={"dropout": jax.random.key(5)})
    return jnp.sum(z * jnp.arange(z.shape[-1]))

  value, grads = jax.jit(jax.value_and_grad(functools.partial(loss, plain)))(params)
  value_r, grads_r = jax.jit(jax.value_and_grad(functools.partial(loss, remat)))(params)
  np.testing.assert_allclose(value_r, value, rtol=1e-6)
  # Recomputation may reorder float sums: equal to ~1e-5 of the gradient's
  # scale (a leaf whose gradient nearly cancels to 0 keeps only rounding).
  scale = max(float(np.abs(g).max()) for g in jax.tree.leaves(grads))
  jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-5 * scale),
               grads_r, grads)
  # One region per trained layer: frozen layers keep nothing to recompute.
  trained = 2 if train_layers == -1 else train_layers
  assert _remat_regions(functools.partial(loss, remat), params) == trained
  assert _remat_regions(functools.partial(loss, plain), params) == 0


def test_unknown_checkpoint_key_raises(tiny_pretraining):
  _, state = tiny_pretraining
  ids, mask = _random_batch(1, 4, lengths=[4])
  params = _init("tiny", ids, mask)
  extra = dict(state)
  extra["bert.encoder.layer.0.attention.self.rotary.weight"] = torch.zeros(4)
  with pytest.raises(ValueError, match=r"bert\.encoder\.layer\.0\.attention\.self\.rotary"):
    bert.load(params, extra)
  _, report = bert.load(params, extra, strict=False)
  assert report["unexpected"] == ["bert.encoder.layer.0.attention.self.rotary.weight"]


def test_missing_checkpoint_key_raises(tiny_pretraining):
  _, state = tiny_pretraining
  ids, mask = _random_batch(1, 4, lengths=[4])
  params = _init("tiny", ids, mask)
  partial = {k: v for k, v in state.items()
             if k != "bert.encoder.layer.1.output.dense.bias"}
  with pytest.raises(ValueError, match=r"encoder\.layer\.1\.output\.dense\.bias"):
    bert.load(params, partial)
  loaded, report = bert.load(params, partial, strict=False)
  assert report["missing"] == ["encoder.layer.1.output.dense.bias"]
  # What the checkpoint lacks keeps the value it had.
  np.testing.assert_array_equal(
      loaded["encoder"]["layer_1"]["output"]["dense"]["bias"],
      params["encoder"]["layer_1"]["output"]["dense"]["bias"])


def test_minilm_into_base_is_a_clear_shape_error(minilm_dir):
  ids, mask = _random_batch(1, 4, lengths=[4])
  template = jax.eval_shape(bert.Model("base").init, jax.random.key(0), ids, mask)
  with pytest.raises(ValueError, match=re.escape(
      "embeddings.word_embeddings.weight: checkpoint shape (30522, 384), "
      "expected (30522, 768)")):
    bert.load(template["params"], minilm_dir)


def test_decode_variant():
  assert bert.decode_variant("minilm-l6") == dict(
      num_layers=6, hidden_size=384, num_heads=12, intermediate_size=1536,
      vocab_size=30522, max_positions=512, type_vocab_size=2, layer_norm_eps=1e-12,
      gelu_approximate=False)
  with pytest.raises(ValueError, match=r"'base', 'minilm-l6', 'tiny'"):
    bert.decode_variant("large")


def test_dropout_only_in_training():
  ids, mask = _random_batch(2, 8, lengths=[8, 5])
  params = {"params": _init("tiny", ids, mask)}
  apply = _model_apply("tiny")

  def train(seed):
    return np.asarray(apply(params, ids, mask, train=True,
                            rngs={"dropout": jax.random.key(seed)}))

  assert np.abs(train(1) - train(2)).max() > 1e-3
  np.testing.assert_array_equal(train(1), train(1))
  eval_a = np.asarray(apply(params, ids, mask))
  eval_b = np.asarray(apply(params, ids, mask, rngs={"dropout": jax.random.key(3)}))
  np.testing.assert_array_equal(eval_a, eval_b)
  assert np.abs(eval_a - train(1)).max() > 1e-3


def test_base_training_step(hf_base):
  ids, mask = _random_batch(2, 16, lengths=[16, 7])
  model = bert.Model("base")
  # Fine-tuning from an imported checkpoint, as training does; it also spares
  # a 110M-parameter random init on CPU.
  params, _ = _checkpoint_params("base", hf_base.state_dict(), ids, mask)
  audio = jax.random.normal(jax.random.key(1), (2, 128))
  audio /= jnp.linalg.norm(audio, axis=-1, keepdims=True)
  optimizer = optax.adam(1e-5)

  @jax.jit
  def loss_and_grads(params, rng):
    def loss_fn(params):
      text = model.apply({"params": params}, ids, mask, train=True, rngs={"dropout": rng})
      logits = text @ audio.T / 0.1
      return optax.softmax_cross_entropy_with_integer_labels(logits, jnp.arange(2)).mean()
    return jax.value_and_grad(loss_fn)(params)

  @jax.jit
  def adam_step(params, grads):
    updates, _ = optimizer.update(grads, optimizer.init(params), params)
    return optax.apply_updates(params, updates)

  rng = jax.random.key(2)
  loss, grads = loss_and_grads(params, rng)
  assert np.isfinite(loss)
  assert all(np.all(np.isfinite(g)) for g in jax.tree.leaves(grads))
  new_params = adam_step(params, grads)
  changed = jax.tree.map(lambda a, b: bool(np.any(np.asarray(a) != np.asarray(b))),
                         params, new_params)
  assert all(jax.tree.leaves(changed)), changed
  # Same dropout mask, so the same function: one small step must lower it.
  new_loss, _ = loss_and_grads(new_params, rng)
  assert new_loss < loss


def test_bfloat16_compute_keeps_float32_params_and_output():
  ids, mask = _random_batch(2, 8, lengths=[8, 5])
  params = _init("tiny", ids, mask)
  encoder = bert.BertEncoder(**bert.decode_variant("tiny"), dtype=jnp.bfloat16)
  sequence, _ = jax.jit(encoder.apply)({"params": params["encoder"]}, ids, mask)
  assert sequence.dtype == jnp.bfloat16
  z32 = np.asarray(_model_apply("tiny")({"params": params}, ids, mask))
  z16 = jax.jit(bert.Model("tiny", dtype=jnp.bfloat16).apply)({"params": params}, ids, mask)
  assert z16.dtype == jnp.float32
  # bfloat16 has ~3 significant digits: close to float32, but not identical.
  assert 0 < np.abs(np.asarray(z16) - z32).max() < 0.05


def test_mean_pooling_matches_transformers_masked_mean(minilm, minilm_dir):
  # sentence-transformers' pooling of all-MiniLM-L6-v2: the PyTorch model's
  # last hidden state averaged over the attention mask, then our projection.
  params, _, ids, mask = minilm
  assert len(set(mask.sum(1))) > 1  # padding differs between rows
  hf = transformers.BertModel.from_pretrained(minilm_dir).eval()
  last = _hf_hidden_states(hf, ids, mask)[-1].astype(np.float64)
  weights = mask.astype(np.float64)[:, :, None]
  pooled = (last * weights).sum(1) / weights.sum(1)
  projected = (pooled @ np.asarray(params["projection"]["kernel"], np.float64)
               + np.asarray(params["projection"]["bias"], np.float64))
  expected = projected / np.linalg.norm(projected, axis=-1, keepdims=True)
  z = np.asarray(jax.jit(bert.Model("minilm-l6", pooling="mean").apply)(
      {"params": params}, ids, mask))
  np.testing.assert_allclose(z, expected, atol=TOLERANCE)
  cls = np.asarray(_model_apply("minilm-l6")({"params": params}, ids, mask))
  assert np.abs(cls - z).max() > 1e-2  # a different pooling, not [CLS] again


def test_unknown_pooling_and_train_layers_are_rejected():
  ids, mask = _random_batch(1, 8, lengths=[8])
  with pytest.raises(ValueError, match="known: cls, mean"):
    bert.Model("tiny", pooling="max").init(jax.random.key(0), ids, mask)
  with pytest.raises(ValueError, match="train_layers=9"):
    bert.frozen_patterns("tiny", train_layers=9)
