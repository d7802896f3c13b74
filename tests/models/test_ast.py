"""AST audio tower: parity with transformers' ASTModel, checkpoint import, training.

The reference throughout is the PyTorch `transformers` implementation with
random weights (no model hub). HF initialises the [CLS]/distillation tokens
and the positions to zero and LayerNorms to the identity, under which a
swapped or untransposed tensor would go unnoticed, so `_randomise` redraws
every parameter.
"""

import re

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
import torch
import torch.nn.functional as F
import transformers
from transformers.models.audio_spectrogram_transformer import (
    modeling_audio_spectrogram_transformer as hf_ast)

from jplaylist.models import ast

TINY_SIZES = dict(hidden_size=64, num_hidden_layers=2, num_attention_heads=2,
                  intermediate_size=128)
ATOL = 1e-4


def _hf_config(max_length=400, **sizes):
  sizes = {**TINY_SIZES, **sizes}
  return transformers.ASTConfig(**sizes, num_mel_bins=128, max_length=max_length,
                                patch_size=16, frequency_stride=10, time_stride=10)


def _randomise(module, seed, matrix_std=0.05, vector_std=0.5):
  """Redraws every parameter of a torch module; returns the module."""
  torch.manual_seed(seed)
  with torch.no_grad():
    for name, param in module.named_parameters():
      if "layernorm" in name and name.endswith("weight"):
        param.copy_(1.0 + 0.1 * torch.randn_like(param))
      elif name.endswith("weight"):
        param.copy_(matrix_std * torch.randn_like(param))
      else:  # Biases, tokens and positions.
        param.copy_(vector_std * torch.randn_like(param))
  return module.eval()


def _encoder_for(config):
  return ast.ASTEncoder(num_layers=config.num_hidden_layers,
                        hidden_size=config.hidden_size,
                        num_heads=config.num_attention_heads,
                        mlp_dim=config.intermediate_size,
                        num_mel_bins=config.num_mel_bins,
                        num_frames=config.max_length)


def _state_dict(module):
  return {k: v.numpy() for k, v in module.state_dict().items()}


def _log_mel(batch, frames=400, seed=0):
  rng = np.random.default_rng(seed)
  return rng.standard_normal((batch, frames, 128)).astype(np.float32)


def _hf_forward(model, log_mel):
  """HF outputs and every hidden state, taken by hooks on the embeddings and blocks.

  Recent transformers (4.57 here) tie `hidden_states[-1]` to the final-LayerNorm
  output, so the hooks give the last block's own output whatever the version.
  """
  captured = []

  def keep(unused_module, unused_inputs, out):
    captured.append((out[0] if isinstance(out, tuple) else out).numpy())

  hooks = [model.embeddings.register_forward_hook(keep)]
  hooks += [layer.register_forward_hook(keep) for layer in model.encoder.layer]
  with torch.no_grad():
    out = model(torch.from_numpy(log_mel), output_hidden_states=True)
  for hook in hooks:
    hook.remove()
  return out, captured


def _max_abs(a, b):
  return float(np.max(np.abs(np.asarray(a, np.float32) - np.asarray(b, np.float32))))


BASE_SIZES = dict(hidden_size=768, num_hidden_layers=12, num_attention_heads=12,
                  intermediate_size=3072)


@pytest.mark.parametrize("sizes, batch, scale", [
    (TINY_SIZES, 2, 1.0),
    # Embeddings of variance ~1e-9 reach the first LayerNorm, where only an
    # epsilon of 1e-12 (not flax's default 1e-6) keeps HF's values.
    (TINY_SIZES, 2, 1e-4),
    # Full ViT-Base at the default window: about 10 s on 2 CPU cores.
    (BASE_SIZES, 1, 1.0),
], ids=["tiny", "tiny-low-variance", "base"])
def test_matches_hf_ast_model(sizes, batch, scale):
  config = _hf_config(**sizes)
  hf_model = _randomise(hf_ast.ASTModel(config), seed=0, vector_std=0.5 * scale,
                        matrix_std=0.05 if sizes["hidden_size"] < 256 else 0.02)
  log_mel = scale * _log_mel(batch)
  hf_out, hf_hidden = _hf_forward(hf_model, log_mel)

  encoder = _encoder_for(config)
  shapes = jax.eval_shape(encoder.init, jax.random.PRNGKey(0), log_mel)["params"]
  params, report = ast.load(shapes, _state_dict(hf_model))
  assert report["missing"] == report["unused"] == report["ignored"] == []
  assert report["resized"] is None
  last, hidden = jax.jit(encoder.apply)({"params": params}, log_mel)

  assert len(hidden) == len(hf_hidden) == len(hf_out.hidden_states) == 1 + len(
      hf_model.encoder.layer)
  diffs = [_max_abs(ours, ref) for ours, ref in zip(hidden, hf_hidden)]
  assert max(diffs) < ATOL, diffs
  assert last.shape == (batch, 2 + 12 * 39, sizes["hidden_size"])
  assert _max_abs(last, hf_out.last_hidden_state) < ATOL
  pooled = (last[:, 0] + last[:, 1]) / 2  # HF's pooler_output.
  assert _max_abs(pooled, hf_out.pooler_output) < ATOL


@pytest.mark.parametrize("from_grid, to_grid", [
    ((12, 101), (12, 39)),  # AudioSet's 1024 frames -> 400.
    ((12, 39), (12, 101)),
    ((8, 20), (12, 39)),
    ((12, 39), (5, 7)),
])
def test_resize_position_embeddings_matches_torch_bilinear(from_grid, to_grid):
  hidden, prefix = 8, 2
  pos = np.random.default_rng(1).standard_normal(
      (1, prefix + from_grid[0] * from_grid[1], hidden)).astype(np.float32)
  patches = torch.from_numpy(pos[:, prefix:]).reshape(1, *from_grid, hidden)
  patches = patches.permute(0, 3, 1, 2)
  expected = F.interpolate(patches, size=to_grid, mode="bilinear", align_corners=False)
  expected = expected.permute(0, 2, 3, 1).reshape(1, -1, hidden).numpy()
  resized = ast.resize_position_embeddings(pos, from_grid, to_grid, prefix)
  np.testing.assert_array_equal(resized[:, :prefix], pos[:, :prefix])
  # A few float32 ulps: the two sum the same two-tap weights in another order.
  np.testing.assert_allclose(resized[:, prefix:], expected, rtol=1e-5, atol=1e-6)


@pytest.fixture(scope="module")
def model_1024(tmp_path_factory):
  """A tiny HF ASTModel made for 1024 frames, saved with its config.json."""
  model = _randomise(hf_ast.ASTModel(_hf_config(max_length=1024)), seed=2)
  path = tmp_path_factory.mktemp("ast_1024")
  model.save_pretrained(path)
  return model, path


def test_load_interpolates_positions_of_a_1024_frame_checkpoint(model_1024):
  hf_model, path = model_1024
  model = ast.Model(variant="tiny")
  log_mel = _log_mel(2)
  params = model.init(jax.random.PRNGKey(0), log_mel)["params"]
  loaded, report = ast.load(params, path)
  assert report["resized"] == ((12, 101), (12, 39))

  source = hf_model.embeddings.position_embeddings.detach()
  patches = source[:, 2:].reshape(1, 12, 101, 64).permute(0, 3, 1, 2)
  patches = F.interpolate(patches, size=(12, 39), mode="bilinear", align_corners=False)
  patches = patches.permute(0, 2, 3, 1).reshape(1, -1, 64)
  expected = torch.cat([source[:, :2], patches], 1)
  pos = loaded["encoder"]["embeddings"]["position_embeddings"]
  np.testing.assert_array_equal(pos[:, :2], source[:, :2].numpy())  # cls, distillation.
  np.testing.assert_allclose(pos, expected.numpy(), rtol=1e-5, atol=1e-6)

  # Without config.json the 12 x 101 grid is inferred from the positions.
  from_mapping, report = ast.load(params, _state_dict(hf_model))
  assert report["resized"] == ((12, 101), (12, 39))
  np.testing.assert_array_equal(
      from_mapping["encoder"]["embeddings"]["position_embeddings"], pos)

  # The loaded model is an HF 400-frame model holding the interpolated positions.
  hf_400 = hf_ast.ASTModel(_hf_config(max_length=400)).eval()
  hf_400.load_state_dict({**hf_model.state_dict(),
                          "embeddings.position_embeddings": expected})
  hf_out, _ = _hf_forward(hf_400, log_mel)
  last, _ = jax.jit(ast.ASTEncoder(**ast.decode_variant("tiny")).apply)(
      {"params": loaded["encoder"]}, log_mel)
  assert _max_abs(last, hf_out.last_hidden_state) < ATOL
  embedding = jax.jit(model.apply)({"params": loaded}, log_mel)
  np.testing.assert_allclose(np.linalg.norm(embedding, axis=-1), 1.0, atol=1e-5)


@pytest.fixture(scope="module")
def classifier_checkpoints(tmp_path_factory):
  """A tiny ASTForAudioClassification as a directory, a .safetensors and a .bin."""
  model = _randomise(hf_ast.ASTForAudioClassification(_hf_config(num_labels=5)), seed=3)
  path = tmp_path_factory.mktemp("ast_classifier")
  model.save_pretrained(path)
  torch.save(model.state_dict(), path / "weights.bin")
  return model, {"directory": path, "safetensors": path / "model.safetensors",
                 "bin": path / "weights.bin"}


@pytest.mark.parametrize("form", ["directory", "safetensors", "bin"])
def test_load_classifier_checkpoint_reports_head(classifier_checkpoints, form):
  hf_model, paths = classifier_checkpoints
  model = ast.Model(variant="tiny")
  log_mel = _log_mel(1)
  params = model.init(jax.random.PRNGKey(0), log_mel)["params"]
  loaded, report = ast.load(params, paths[form])
  assert report["ignored"] == sorted(k for k in hf_model.state_dict()
                                     if k.startswith("classifier."))
  assert len(report["ignored"]) == 4  # LayerNorm and Dense, weight and bias.
  assert report["missing"] == report["unused"] == []
  jax.tree_util.tree_map(np.testing.assert_array_equal, loaded["projection"],
                         params["projection"])
  hf_out, _ = _hf_forward(hf_model.audio_spectrogram_transformer, log_mel)
  last, _ = jax.jit(ast.ASTEncoder(**ast.decode_variant("tiny")).apply)(
      {"params": loaded["encoder"]}, log_mel)
  assert _max_abs(last, hf_out.last_hidden_state) < ATOL


@pytest.fixture(scope="module")
def tiny_checkpoint():
  return _state_dict(_randomise(hf_ast.ASTModel(_hf_config()), seed=4))


@pytest.fixture(scope="module")
def tiny_params():
  return ast.Model(variant="tiny").init(jax.random.PRNGKey(0), _log_mel(1))["params"]


def test_load_rejects_an_unused_key(tiny_checkpoint, tiny_params):
  key = "encoder.layer.2.output.dense.bias"
  checkpoint = {**tiny_checkpoint, key: np.zeros(64, np.float32)}
  with pytest.raises(ValueError, match=key.replace(".", r"\.")):
    ast.load(tiny_params, checkpoint)
  _, report = ast.load(tiny_params, checkpoint, strict=False)
  assert report["unused"] == [key]


def test_load_rejects_a_missing_key(tiny_checkpoint, tiny_params):
  key = "encoder.layer.1.output.dense.bias"
  checkpoint = {k: v for k, v in tiny_checkpoint.items() if k != key}
  with pytest.raises(ValueError, match=key.replace(".", r"\.")):
    ast.load(tiny_params, checkpoint)
  loaded, report = ast.load(tiny_params, checkpoint, strict=False)
  assert report["missing"] == [key]
  np.testing.assert_array_equal(loaded["encoder"]["layer_1"]["output"]["bias"],
                                tiny_params["encoder"]["layer_1"]["output"]["bias"])
  np.testing.assert_array_equal(loaded["encoder"]["layer_0"]["output"]["bias"],
                                tiny_checkpoint["encoder.layer.0.output.dense.bias"])


def test_load_rejects_a_wrong_shape(tiny_checkpoint, tiny_params):
  checkpoint = {**tiny_checkpoint, "layernorm.weight": np.ones(65, np.float32)}
  with pytest.raises(ValueError, match=r"layernorm\.weight.*\(65,\).*\(64,\)"):
    ast.load(tiny_params, checkpoint, strict=False)


def test_load_rejects_a_distillation_token_the_model_lacks(tiny_checkpoint):
  model = ast.Model(variant="tiny", use_distillation_token=False)
  params = model.init(jax.random.PRNGKey(0), _log_mel(1))["params"]
  with pytest.raises(ValueError, match=r"embeddings\.position_embeddings"):
    ast.load(params, tiny_checkpoint)


def test_model_gives_unit_norm_embeddings(tiny_params):
  log_mel = _log_mel(3)
  model = ast.Model(variant="tiny", dropout_rate=0.1)
  embedding = jax.jit(model.apply)({"params": tiny_params}, log_mel)
  assert embedding.shape == (3, 128) and embedding.dtype == jnp.float32
  np.testing.assert_allclose(np.linalg.norm(embedding, axis=-1), 1.0, atol=1e-5)
  assert _max_abs(embedding[0], embedding[1]) > 1e-3  # Inputs differ, so must outputs.

  dropped = jax.jit(model.apply, static_argnames="train")(
      {"params": tiny_params}, log_mel, train=True,
      rngs={"dropout": jax.random.PRNGKey(1)})
  assert _max_abs(dropped, embedding) > 1e-4

  bf16 = jax.jit(ast.Model(variant="tiny", dtype=jnp.bfloat16).apply)(
      {"params": tiny_params}, log_mel)
  assert bf16.dtype == jnp.float32
  assert np.min(np.sum(np.asarray(bf16) * np.asarray(embedding), axis=-1)) > 0.99

  no_distillation = ast.ASTEncoder(**ast.decode_variant("tiny"),
                                   use_distillation_token=False)
  assert no_distillation.num_prefix_tokens == 1
  shapes = jax.eval_shape(no_distillation.init, jax.random.PRNGKey(0), log_mel)
  assert shapes["params"]["embeddings"]["position_embeddings"].shape == (1, 1 + 468, 64)


def test_remat_blocks_import_hf_weights_and_keep_values_and_gradients(tiny_checkpoint,
                                                                      tiny_params):
  log_mel = _log_mel(2)
  remat = ast.Model(variant="tiny", dropout_rate=0.1, remat=True)
  plain = ast.Model(variant="tiny", dropout_rate=0.1)
  # The same parameter tree, so the same checkpoints (ours and HF's) load.
  shapes = jax.eval_shape(remat.init, jax.random.PRNGKey(0), log_mel)["params"]
  assert (jax.tree.map(lambda x: (x.shape, x.dtype), shapes)
          == jax.tree.map(lambda x: (x.shape, x.dtype), tiny_params))
  params, report = ast.load(shapes, tiny_checkpoint)
  assert report["missing"] == report["unused"] == []
  params["projection"] = tiny_params["projection"]
  # HF parity through the rematerialised blocks.
  hf_out, _ = _hf_forward(_randomise(hf_ast.ASTModel(_hf_config()), seed=4), log_mel)
  encoder = ast.ASTEncoder(**ast.decode_variant("tiny"), remat=True)
  last, _ = jax.jit(encoder.apply)({"params": params["encoder"]}, log_mel)
  assert _max_abs(last, hf_out.last_hidden_state) < ATOL

  def loss(model, params):
    z = model.apply({"params": params}, log_mel, train=True,
                    rngs={"dropout": jax.random.PRNGKey(5)})
    return jnp.sum(z * jnp.arange(z.shape[-1]))

  value, grads = jax.jit(jax.value_and_grad(lambda p: loss(plain, p)))(params)
  value_r, grads_r = jax.jit(jax.value_and_grad(lambda p: loss(remat, p)))(params)
  np.testing.assert_allclose(value_r, value, rtol=1e-6)
  # Recomputation may reorder float sums: equal to ~1e-5 of the gradient's
  # scale (a leaf whose gradient nearly cancels to 0 keeps only rounding).
  scale = max(float(np.abs(g).max()) for g in jax.tree.leaves(grads))
  jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-5 * scale),
               grads_r, grads)
  # One rematerialised region per block (tiny: 2), none without remat.
  regions = lambda model: len(re.findall(r"= (?:remat\w*|checkpoint)\[", str(
      jax.make_jaxpr(lambda p: loss(model, p))(params))))
  assert regions(remat) == 2 and regions(plain) == 0


def test_patch_grid_matches_hf():
  for mels, frames in [(128, 400), (128, 1024), (64, 250)]:
    config = transformers.ASTConfig(num_mel_bins=mels, max_length=frames)
    expected = hf_ast.ASTEmbeddings.get_shape(None, config)
    assert ast.patch_grid(mels, frames) == expected
    assert ast.ASTEncoder(num_mel_bins=mels, num_frames=frames).patch_grid == expected
  assert ast.ASTEncoder().patch_grid == (12, 39)
  with pytest.raises(ValueError, match="300 frames"):
    ast.ASTEncoder(**ast.decode_variant("tiny"), num_frames=300).init(
        jax.random.PRNGKey(0), _log_mel(1))
  with pytest.raises(ValueError, match=r"\[B, 400 frames, 128 mels\]"):
    jax.eval_shape(ast.ASTEncoder(**ast.decode_variant("tiny")).init,
                   jax.random.PRNGKey(0), _log_mel(1, frames=300))


def test_decode_variant():
  assert ast.decode_variant("base") == dict(num_layers=12, hidden_size=768,
                                            num_heads=12, mlp_dim=3072)
  assert ast.decode_variant("small")["hidden_size"] == 384
  with pytest.raises(ValueError, match="base, small, tiny"):
    ast.decode_variant("B/16")


def _count(tree):
  return sum(int(np.prod(leaf.shape)) for leaf in jax.tree_util.tree_leaves(tree))


def test_base_parameter_count():
  # ViT-Base, H = 768, 12 blocks of:
  #   attention 4 * (768 * 768 + 768)          = 2,362,368
  #   MLP 768 * 3072 + 3072 + 3072 * 768 + 768 = 4,722,432
  #   two LayerNorms 4 * 768                   =     3,072   -> 7,087,872 a block
  # 12 blocks 85,054,464 + patch conv 16 * 16 * 768 + 768 = 197,376 + [CLS] and
  # distillation 1,536 + final LayerNorm 1,536 + positions (2 + 12 * 39) * 768
  # = 360,960 -> 85,615,872 (85.6M) at 128 x 400. At AudioSet's 1024 frames
  # (2 + 12 * 101 positions: 86,187,264) with its 527-class head (LayerNorm
  # 1,536 + Dense 768 * 527 + 527) that is 86,594,063: the 86-87M quoted for
  # AST-Base. Our 400-frame window has 571,392 fewer positional parameters.
  def count(frames):
    encoder = ast.ASTEncoder(num_frames=frames)
    log_mel = jax.ShapeDtypeStruct((1, frames, 128), jnp.float32)
    shapes = jax.eval_shape(encoder.init, jax.random.PRNGKey(0), log_mel)
    return _count(shapes["params"])

  assert count(400) == 85_615_872
  assert count(1024) + 2 * 768 + 768 * 527 + 527 == 86_594_063
  with torch.device("meta"):
    reference = hf_ast.ASTModel(transformers.ASTConfig(max_length=400))
  assert count(400) == sum(p.numel() for p in reference.parameters())
  model_shapes = jax.eval_shape(ast.Model().init, jax.random.PRNGKey(0),
                                jax.ShapeDtypeStruct((1, 400, 128), jnp.float32))
  assert _count(model_shapes) == 85_615_872 + 768 * 128 + 128


def test_base_model_training_step():
  model = ast.Model()  # Full size: ViT-Base at 128 mels x 400 frames.
  log_mel = _log_mel(1)
  shapes = jax.eval_shape(model.init, jax.random.PRNGKey(0), log_mel)["params"]
  # Host-side random values: the jitted truncated-normal init of 86M params
  # costs more CPU time than the step itself.
  rng = np.random.default_rng(0)
  fill = lambda path, s: (np.ones(s.shape, s.dtype) if path[-1].key == "scale"
                          else 0.02 * rng.standard_normal(s.shape, dtype=np.float32))
  params = jax.tree_util.tree_map_with_path(fill, shapes)
  target = np.ones(128, np.float32) / np.sqrt(128)
  loss_fn = lambda p: -jnp.sum(model.apply({"params": p}, log_mel) * target)

  loss, grads = jax.jit(jax.value_and_grad(loss_fn))(params)
  # Every parameter reaches the [CLS] output, so every gradient is nonzero.
  for path, grad in jax.tree_util.tree_leaves_with_path(grads):
    assert np.all(np.isfinite(grad)) and np.any(grad != 0), jax.tree_util.keystr(path)

  optimizer = optax.adam(1e-4)
  updates, _ = jax.jit(optimizer.update)(grads, optimizer.init(params), params)
  new_params = optax.apply_updates(params, updates)
  for (path, old), new in zip(jax.tree_util.tree_leaves_with_path(params),
                              jax.tree_util.tree_leaves(new_params)):
    assert np.any(np.asarray(old) != np.asarray(new)), jax.tree_util.keystr(path)
  assert float(jax.jit(loss_fn)(new_params)) < float(loss)
