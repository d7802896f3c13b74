"""Contrastive losses against a float64 numpy reference written from the formulas.

Every implementation (plain, chunked, sharded gather and ring on 1, 2 and 8
devices) must give the reference's value, metrics and gradients with respect
to za, zt, the temperature and the siglip bias. The reference's gradients are
central finite differences of the reference itself, so nothing here shares
code, or an autodiff rule, with the library.
"""

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jplaylist import losses

BATCH = 24  # divides by 1, 2 and 8 devices and by chunk 8; not by 5; 64 > B
DIM = 16
TEMPERATURE = 0.2
BIAS = -2.0
# Largest error of float32 results against the float64 reference: absolute on
# quantities up to 1 in size (values, embedding gradients, metrics), relative
# above. The siglip temperature gradient at 0.1 is -137.6, where one float32
# ulp is already 1.5e-5, so no float32 result could be within 1e-5 absolute.
TOLERANCE = 1e-5

# ("ring", (devices, chunk)): each visiting block of B / devices texts folded
# in chunks; 12 texts per block in chunks of 5 leaves a remainder of 2.
VARIANTS = [("plain", None), ("chunked", 8), ("chunked", 5), ("chunked", 64),
            ("gather", 1), ("gather", 2), ("gather", 8),
            ("ring", 1), ("ring", 2), ("ring", 8),
            ("ring", (2, 5)), ("ring", (8, 1)), ("ring", (1, 8))]


def _unit(x):
  return x / np.linalg.norm(x, axis=-1, keepdims=True)


def _pairs(seed=0, batch_size=BATCH, noise=0.4):
  """Unit embeddings whose texts are noisy copies of their audios.

  The noise is set so that retrieval is right for most pairs but not all, and
  differs between the two directions, so the accuracy metrics are tested.
  """
  rng = np.random.default_rng(seed)
  za = _unit(rng.normal(size=(batch_size, DIM)))
  zt = _unit(za + noise * rng.normal(size=(batch_size, DIM)))
  return za, zt


# ----------------------------------------------------------------------------
# The numpy reference, one formula per kind.

def _log_sum_exp(values):
  values = np.asarray(values, np.float64)
  top = values.max()
  return top + np.log(np.sum(np.exp(values - top)))


def reference_loss(za, zt, temperature, bias, kind):
  """The loss of the module docstring's formulas, in float64, with loops."""
  logits = za @ zt.T / temperature
  batch_size = len(za)
  if kind == "clip":
    audio_to_text = [_log_sum_exp(logits[i, :]) - logits[i, i] for i in range(batch_size)]
    text_to_audio = [_log_sum_exp(logits[:, j]) - logits[j, j] for j in range(batch_size)]
    return 0.5 * np.mean(audio_to_text) + 0.5 * np.mean(text_to_audio)
  if kind == "mulan":
    per_pair = []
    for i in range(batch_size):
      others = [j for j in range(batch_size) if j != i]
      denominator = ([logits[i, i]] + [logits[i, j] for j in others]
                     + [logits[j, i] for j in others])
      per_pair.append(_log_sum_exp(denominator) - logits[i, i])
    return np.mean(per_pair)
  if kind == "siglip":
    sign = 2.0 * np.eye(batch_size) - 1.0
    # -log sigmoid(x) = log(1 + exp(-x))
    return np.sum(np.logaddexp(0.0, -sign * (logits + bias))) / batch_size
  raise ValueError(kind)


def reference_metrics(za, zt):
  similarity = za @ zt.T
  batch_size = len(za)
  diagonal = np.diag(similarity)
  off = ~np.eye(batch_size, dtype=bool)
  best_text = np.where(off, similarity, -np.inf).max(axis=1)
  best_audio = np.where(off, similarity, -np.inf).max(axis=0)
  return {"accuracy_audio_to_text": np.mean(diagonal > best_text),
          "accuracy_text_to_audio": np.mean(diagonal > best_audio),
          "positive_similarity": diagonal.mean(),
          "negative_similarity": similarity[off].mean()}


def _finite_difference(fn, x, step=1e-6):
  x = np.array(x, np.float64)
  grad = np.zeros_like(x)
  for index in np.ndindex(x.shape):
    plus, minus = x.copy(), x.copy()
    plus[index] += step
    minus[index] -= step
    grad[index] = (fn(plus) - fn(minus)) / (2 * step)
  return grad


@functools.lru_cache(maxsize=None)
def reference(kind, seed=0):
  """(value, {argument: gradient}, metrics) of the reference at `_pairs(seed)`."""
  za, zt = _pairs(seed)
  bias = BIAS if kind == "siglip" else None
  loss = lambda a=za, t=zt, tau=TEMPERATURE, b=bias: reference_loss(a, t, tau, b, kind)
  grads = {"za": _finite_difference(lambda a: loss(a=a), za),
           "zt": _finite_difference(lambda t: loss(t=t), zt),
           "temperature": _finite_difference(lambda tau: loss(tau=tau), TEMPERATURE)}
  if kind == "siglip":
    grads["bias"] = _finite_difference(lambda b: loss(b=b), BIAS)
  return loss(), grads, reference_metrics(za, zt)


# ----------------------------------------------------------------------------
# The implementations under test, each as fn(za, zt, temperature, bias).

def _mesh(num_devices):
  return jax.sharding.Mesh(np.array(jax.devices()[:num_devices]), ("data",))


def _sharded_loss(variant, kind):
  name, setting = variant
  devices, chunk_size = setting if isinstance(setting, tuple) else (setting, None)
  return losses.make_sharded_loss(_mesh(devices), kind=kind, implementation=name,
                                  chunk_size=chunk_size)


def _loss_fn(variant, kind):
  name, setting = variant
  if name in ("gather", "ring"):
    return _sharded_loss(variant, kind)
  options = {"implementation": "chunked", "chunk_size": setting} if name == "chunked" else {}
  return lambda za, zt, temperature, bias=None: losses.contrastive_loss(
      za=za, zt=zt, temperature=temperature, bias=bias, kind=kind, **options)


@functools.lru_cache(maxsize=None)
def _compiled(variant, kind):
  """jit(value_and_grad) over za, zt, temperature (and bias for siglip)."""
  loss_fn = _loss_fn(variant, kind)
  argnums = (0, 1, 2, 3) if kind == "siglip" else (0, 1, 2)
  return jax.jit(jax.value_and_grad(loss_fn, argnums=argnums, has_aux=True))


def _run(variant, kind, za, zt, temperature=TEMPERATURE):
  bias = jnp.float32(BIAS) if kind == "siglip" else None
  (loss, metrics), grads = _compiled(variant, kind)(
      jnp.asarray(za, jnp.float32), jnp.asarray(zt, jnp.float32),
      jnp.float32(temperature), bias)
  names = ("za", "zt", "temperature", "bias")
  return float(loss), dict(zip(names, map(np.asarray, grads))), jax.device_get(metrics)


def _assert_close(actual, expected, what):
  actual, expected = np.asarray(actual, np.float64), np.asarray(expected, np.float64)
  error = np.max(np.abs(actual - expected)) / max(1.0, np.max(np.abs(expected)))
  assert error <= TOLERANCE, f"{what}: error {error:.2e} > {TOLERANCE} (scaled)"


def _variant_id(variant):
  name, setting = variant
  if name == "plain":
    return "plain"
  if isinstance(setting, tuple):
    return f"{name}-{setting[0]}dev-chunk{setting[1]}"
  return f"{name}-chunk{setting}" if name == "chunked" else f"{name}-{setting}dev"


# ----------------------------------------------------------------------------
# Tests.

@pytest.mark.parametrize("kind", losses.KINDS)
def test_reference_gives_closed_forms(kind):
  # Guards the reference itself: with all logits 0 (and bias 0) its three
  # formulas reduce to ln B, ln(2B - 1) and B ln 2.
  za = np.zeros((5, DIM))
  value = reference_loss(za, za, 0.5, 0.0 if kind == "siglip" else None, kind)
  expected = {"clip": np.log(5), "mulan": np.log(9), "siglip": 5 * np.log(2)}[kind]
  np.testing.assert_allclose(value, expected, rtol=1e-12)


@pytest.mark.parametrize("variant", VARIANTS, ids=_variant_id)
@pytest.mark.parametrize("kind", losses.KINDS)
def test_value_gradients_and_metrics_match_reference(kind, variant):
  expected_loss, expected_grads, expected_metrics = reference(kind)
  za, zt = _pairs()
  loss, grads, metrics = _run(variant, kind, za, zt)
  _assert_close(loss, expected_loss, "loss")
  _assert_close(metrics["loss"], expected_loss, "metrics['loss']")
  for name, expected in expected_grads.items():
    _assert_close(grads[name], expected, f"d loss / d {name}")
  for name, expected in expected_metrics.items():
    _assert_close(metrics[name], expected, name)
  np.testing.assert_allclose(metrics["temperature"], TEMPERATURE, rtol=1e-7)
  assert set(metrics) == set(expected_metrics) | {"loss", "temperature"} | (
      {"bias"} if kind == "siglip" else set())


def test_test_data_exercises_the_accuracy_metrics():
  # Otherwise the metric comparisons above would pass for constant metrics.
  metrics = reference_metrics(*_pairs())
  accuracies = (metrics["accuracy_audio_to_text"], metrics["accuracy_text_to_audio"])
  assert all(0.3 < a < 1.0 for a in accuracies) and accuracies[0] != accuracies[1]


@pytest.mark.parametrize("kind", losses.KINDS)
@pytest.mark.parametrize("temperature", [0.1, 0.5, 1.0])
def test_temperature_gradient(kind, temperature):
  za, zt = _pairs(seed=1)
  bias = BIAS if kind == "siglip" else None
  expected = _finite_difference(
      lambda tau: reference_loss(za, zt, tau, bias, kind), temperature)
  for variant in (("plain", None), ("ring", 8)):
    _, grads, _ = _run(variant, kind, za, zt, temperature)
    _assert_close(grads["temperature"], expected, f"{variant} d loss / d temperature")


@pytest.mark.parametrize("kind", ["clip", "mulan"])
def test_uniform_logits_give_the_closed_form(kind):
  # All embeddings equal: every logit is the same, whatever the temperature.
  za = np.tile(_unit(np.arange(1.0, DIM + 1.0)), (BATCH, 1))
  expected = losses.uniform_logits_loss(BATCH, kind)
  np.testing.assert_allclose(expected, {"clip": np.log(BATCH),
                                        "mulan": np.log(2 * BATCH - 1)}[kind], rtol=1e-12)
  for variant in (("plain", None), ("chunked", 5), ("gather", 8), ("ring", 8)):
    loss, _, metrics = _run(variant, kind, za, za, temperature=0.3)
    np.testing.assert_allclose(loss, expected, rtol=1e-6, err_msg=str(variant))
    # A collapsed embedding retrieves nothing: ties are not hits.
    assert metrics["accuracy_audio_to_text"] == metrics["accuracy_text_to_audio"] == 0.0


def test_uniform_logits_loss_siglip():
  # logit + bias = 0 everywhere: B^2 terms of ln 2, over B.
  za = np.tile(_unit(np.ones(DIM)), (BATCH, 1))
  assert losses.uniform_logits_loss(BATCH, "siglip") == pytest.approx(BATCH * np.log(2))
  loss = losses.contrastive_loss(za=jnp.float32(za), zt=jnp.float32(za),
                                 temperature=jnp.float32(0.5), bias=jnp.float32(-2.0),
                                 kind="siglip")[0]
  np.testing.assert_allclose(loss, losses.uniform_logits_loss(BATCH, "siglip"), rtol=1e-6)


def test_accuracy_on_constructed_batches():
  za, _ = _pairs(seed=2)
  swapped = za.copy()
  swapped[[0, 1]] = za[[1, 0]]  # pairs 0 and 1 now retrieve each other's partner
  for variant in (("plain", None), ("chunked", 5), ("gather", 8), ("ring", 2), ("ring", 8)):
    _, _, metrics = _run(variant, "clip", za, za)
    assert metrics["accuracy_audio_to_text"] == metrics["accuracy_text_to_audio"] == 1.0
    np.testing.assert_allclose(metrics["positive_similarity"], 1.0, rtol=1e-6)
    _, _, metrics = _run(variant, "clip", za, swapped)
    expected = (BATCH - 2) / BATCH
    assert metrics["accuracy_audio_to_text"] == pytest.approx(expected, abs=1e-7)
    assert metrics["accuracy_text_to_audio"] == pytest.approx(expected, abs=1e-7)


def test_metrics_agree_across_implementations():
  za, zt = _pairs(seed=3)
  results = {v: _run(v, "mulan", za, zt)[2] for v in VARIANTS}
  first = results[VARIANTS[0]]
  for variant, metrics in results.items():
    assert set(metrics) == set(first)
    for name in first:
      np.testing.assert_allclose(metrics[name], first[name], rtol=1e-6, atol=1e-7,
                                 err_msg=f"{name} of {variant}")


def test_bfloat16_embeddings_accumulate_in_float32():
  # The reference sees the same bf16-rounded numbers: a loss accumulated in
  # bf16 would miss it by ~1e-2, one in float32 by ~1e-6.
  za, zt = (jnp.asarray(z, jnp.bfloat16) for z in _pairs())
  loss, metrics = jax.jit(functools.partial(losses.contrastive_loss, kind="mulan"))(
      za=za, zt=zt, temperature=jnp.float32(0.07))
  assert loss.dtype == jnp.float32 and metrics["positive_similarity"].dtype == jnp.float32
  expected = reference_loss(np.asarray(za, np.float64), np.asarray(zt, np.float64),
                            np.float64(np.float32(0.07)), None, "mulan")
  _assert_close(loss, expected, "bf16 loss")


def test_blockwise_variants_never_hold_the_whole_matrix():
  # From XLA's compiled memory analysis (no run): the per-device temporaries
  # of value-and-grad at B = 2048 against the size of one [B, B] f32 matrix.
  batch_size, matrix = 2048, 2048 * 2048 * 4
  za = jax.ShapeDtypeStruct((batch_size, DIM), jnp.float32)
  temperature = jax.ShapeDtypeStruct((), jnp.float32)

  def temp_bytes(variant):
    loss_fn = _loss_fn(variant, "mulan")
    grad_fn = jax.grad(lambda *args: loss_fn(*args)[0], argnums=(0, 1, 2))
    compiled = jax.jit(grad_fn).lower(za, za, temperature).compile()
    return compiled.memory_analysis().temp_size_in_bytes

  assert temp_bytes(("plain", None)) >= matrix  # the control: it does hold it
  assert temp_bytes(("chunked", 128)) < matrix / 2
  assert temp_bytes(("gather", 8)) < matrix / 2
  assert temp_bytes(("ring", 8)) < matrix / 8


def test_chunked_ring_holds_less_than_one_block():
  # Per device at B = 8192 on 8 devices: one B_local x B_local f32 block is
  # 4 MiB; chunks of 64 texts make the logits 1024 x 64 (256 KiB) at a time.
  batch_size, local = 8192, 1024
  block = local * local * 4
  za = jax.ShapeDtypeStruct((batch_size, DIM), jnp.float32)
  temperature = jax.ShapeDtypeStruct((), jnp.float32)

  def temp_bytes(chunk_size):
    loss_fn = losses.make_sharded_loss(_mesh(8), kind="mulan", implementation="ring",
                                       chunk_size=chunk_size)
    grad_fn = jax.grad(lambda *args: loss_fn(*args)[0], argnums=(0, 1, 2))
    compiled = jax.jit(grad_fn).lower(za, za, temperature).compile()
    return compiled.memory_analysis().temp_size_in_bytes

  whole_blocks = temp_bytes(None)
  assert whole_blocks >= block  # the control
  # Beside the chunks' logits, the scan keeps each chunk's [B_local] running
  # statistics for the backward pass: B_local x B / chunk more floats.
  assert temp_bytes(64) < whole_blocks / 4


def test_batches_past_46341_pairs_trace():
  # B (B - 1) no longer fits int32 there; the negative-similarity metric
  # divided by it and failed at trace time before it was taken as a float.
  za = jax.ShapeDtypeStruct((65536, 2), jnp.float32)
  loss, metrics = jax.eval_shape(
      lambda a: losses.contrastive_loss(za=a, zt=a, temperature=jnp.float32(0.1),
                                        implementation="chunked", chunk_size=4096), za)
  assert loss.shape == () and metrics["negative_similarity"].dtype == jnp.float32


def test_sharded_loss_in_a_jitted_step_on_sharded_arrays():
  mesh = _mesh(8)
  sharding = jax.sharding.NamedSharding(mesh, jax.sharding.PartitionSpec("data"))
  za, zt = (jax.device_put(jnp.float32(z), sharding) for z in _pairs())
  loss_fn = losses.make_sharded_loss(mesh, kind="clip", implementation="ring")
  loss, metrics = jax.jit(loss_fn)(za, zt, jnp.float32(TEMPERATURE))
  assert metrics["loss"].sharding.is_fully_replicated
  _assert_close(loss, reference("clip")[0], "loss")


def test_errors():
  za = jnp.zeros((4, DIM))
  tau = jnp.float32(0.1)
  with pytest.raises(ValueError, match="bias is required"):
    losses.contrastive_loss(za=za, zt=za, temperature=tau, kind="siglip")
  with pytest.raises(ValueError, match="takes no bias"):
    losses.contrastive_loss(za=za, zt=za, temperature=tau, bias=jnp.float32(0.0),
                            kind="clip")
  with pytest.raises(ValueError, match="known: mulan, clip, siglip"):
    losses.contrastive_loss(za=za, zt=za, temperature=tau, kind="infonce")
  with pytest.raises(ValueError, match="known: gather, ring, chunked"):
    losses.contrastive_loss(za=za, zt=za, temperature=tau, implementation="allreduce")
  with pytest.raises(ValueError, match="axis_name"):
    losses.contrastive_loss(za=za, zt=za, temperature=tau, implementation="ring")
  with pytest.raises(ValueError, match="chunk_size"):
    losses.contrastive_loss(za=za, zt=za, temperature=tau, implementation="chunked")
  with pytest.raises(ValueError, match="not 'gather'"):
    losses.contrastive_loss(za=za, zt=za, temperature=tau, chunk_size=2)
  with pytest.raises(ValueError, match=r"\[B, d\]"):
    losses.contrastive_loss(za=za, zt=za[:3], temperature=tau)
  with pytest.raises(ValueError, match="known"):
    losses.uniform_logits_loss(8, "infonce")
  with pytest.raises(ValueError, match="'gather' or 'ring'"):
    losses.make_sharded_loss(_mesh(2), implementation="chunked")


# ----------------------------------------------------------------------------
# Duplicate texts masked out of the negatives (text_key).

# Groups of pairs with the same text, across chunk and device boundaries:
# {0, 5, 23}, {3, 4}, {9, 16}; all other keys distinct.
DUPLICATE_KEYS = np.arange(BATCH, dtype=np.int32) + 100
DUPLICATE_KEYS[[5, 23]] = DUPLICATE_KEYS[0]
DUPLICATE_KEYS[4] = DUPLICATE_KEYS[3]
DUPLICATE_KEYS[16] = DUPLICATE_KEYS[9]


def reference_loss_with_duplicates(za, zt, temperature, bias, kind, keys):
  """As `reference_loss`, but a_i, t_j with i != j and keys[i] == keys[j] are
  neither positive nor negative: they leave every sum."""
  logits = za @ zt.T / temperature
  batch_size = len(za)
  negative = lambda i, j: keys[i] != keys[j]
  if kind == "clip":
    audio_to_text = [_log_sum_exp([logits[i, i]] + [logits[i, j] for j in range(batch_size)
                                                   if negative(i, j)]) - logits[i, i]
                     for i in range(batch_size)]
    text_to_audio = [_log_sum_exp([logits[j, j]] + [logits[i, j] for i in range(batch_size)
                                                   if negative(i, j)]) - logits[j, j]
                     for j in range(batch_size)]
    return 0.5 * np.mean(audio_to_text) + 0.5 * np.mean(text_to_audio)
  if kind == "mulan":
    per_pair = []
    for i in range(batch_size):
      others = [j for j in range(batch_size) if negative(i, j)]
      denominator = ([logits[i, i]] + [logits[i, j] for j in others]
                     + [logits[j, i] for j in others])
      per_pair.append(_log_sum_exp(denominator) - logits[i, i])
    return np.mean(per_pair)
  if kind == "siglip":
    total = 0.0
    for i in range(batch_size):
      for j in range(batch_size):
        if i == j:
          total += np.logaddexp(0.0, -(logits[i, j] + bias))
        elif negative(i, j):
          total += np.logaddexp(0.0, logits[i, j] + bias)
    return total / batch_size
  raise ValueError(kind)


def _keyed_loss_fn(variant, kind):
  name, setting = variant
  if name in ("gather", "ring"):
    sharded = _sharded_loss(variant, kind)
    return lambda za, zt, temperature, bias, key: sharded(za, zt, temperature, bias, key)
  options = {"implementation": "chunked", "chunk_size": setting} if name == "chunked" else {}
  return lambda za, zt, temperature, bias, key: losses.contrastive_loss(
      za=za, zt=zt, temperature=temperature, bias=bias, kind=kind, text_key=key, **options)


def _run_keyed(variant, kind, za, zt, keys, temperature=TEMPERATURE):
  argnums = (0, 1, 2, 3) if kind == "siglip" else (0, 1, 2)
  fn = jax.jit(jax.value_and_grad(_keyed_loss_fn(variant, kind), argnums=argnums,
                                  has_aux=True))
  bias = jnp.float32(BIAS) if kind == "siglip" else None
  (loss, metrics), grads = fn(jnp.float32(za), jnp.float32(zt), jnp.float32(temperature),
                              bias, jnp.asarray(keys, jnp.int32))
  names = ("za", "zt", "temperature", "bias")
  return float(loss), dict(zip(names, map(np.asarray, grads))), jax.device_get(metrics)


@pytest.mark.parametrize("kind", losses.KINDS)
def test_duplicate_masked_plain_loss_matches_reference(kind):
  za, zt = _pairs(seed=4)
  bias = BIAS if kind == "siglip" else None
  keys = DUPLICATE_KEYS
  loss = lambda a=za, t=zt, tau=TEMPERATURE, b=bias: reference_loss_with_duplicates(
      a, t, tau, b, kind, keys)
  value, grads, metrics = _run_keyed(("plain", None), kind, za, zt, keys)
  _assert_close(value, loss(), "loss")
  _assert_close(grads["za"], _finite_difference(lambda a: loss(a=a), za), "d / d za")
  _assert_close(grads["zt"], _finite_difference(lambda t: loss(t=t), zt), "d / d zt")
  _assert_close(grads["temperature"], _finite_difference(lambda tau: loss(tau=tau),
                                                         TEMPERATURE), "d / d tau")
  if kind == "siglip":
    _assert_close(grads["bias"], _finite_difference(lambda b: loss(b=b), BIAS), "d / d b")
  # Masking changes the loss: the duplicates were negatives before.
  assert abs(value - reference_loss(za, zt, TEMPERATURE, bias, kind)) > 1e-3
  # Accuracy: the best negative skips duplicates; negative_similarity keeps them.
  similarity = za @ zt.T
  off = keys[:, None] != keys[None, :]
  diagonal = np.diag(similarity)
  _assert_close(metrics["accuracy_audio_to_text"],
                np.mean(diagonal > np.where(off, similarity, -np.inf).max(axis=1)), "a2t")
  _assert_close(metrics["accuracy_text_to_audio"],
                np.mean(diagonal > np.where(off, similarity, -np.inf).max(axis=0)), "t2a")
  _assert_close(metrics["negative_similarity"],
                similarity[~np.eye(BATCH, dtype=bool)].mean(), "negative_similarity")


def test_all_distinct_keys_change_nothing():
  za, zt = _pairs()
  keys = np.arange(BATCH, dtype=np.int32)
  for kind in losses.KINDS:
    value, grads, _ = _run_keyed(("plain", None), kind, za, zt, keys)
    expected_loss, expected_grads, _ = reference(kind)
    _assert_close(value, expected_loss, f"{kind} loss")
    _assert_close(grads["za"], expected_grads["za"], f"{kind} d / d za")


@pytest.mark.parametrize("variant", [v for v in VARIANTS if v[0] != "plain"],
                         ids=_variant_id)
@pytest.mark.parametrize("kind", losses.KINDS)
def test_duplicate_masked_variants_equal_plain(kind, variant):
  za, zt = _pairs(seed=4)
  plain_loss, plain_grads, plain_metrics = _run_keyed(("plain", None), kind, za, zt,
                                                      DUPLICATE_KEYS)
  loss, grads, metrics = _run_keyed(variant, kind, za, zt, DUPLICATE_KEYS)
  _assert_close(loss, plain_loss, "loss")
  for name, expected in plain_grads.items():
    _assert_close(grads[name], expected, f"d loss / d {name}")
  for name, expected in plain_metrics.items():
    _assert_close(metrics[name], expected, name)


def test_text_identity_key_equal_iff_real_tokens_equal():
  rng = np.random.default_rng(6)
  for trial in range(5):
    batch, length = 32, 12
    lengths = rng.integers(1, length + 1, batch)
    mask = (np.arange(length)[None] < lengths[:, None]).astype(np.int32)
    ids = rng.integers(0, 5, (batch, length)).astype(np.int32)  # small vocab: near misses
    # Planted duplicates: same real tokens, different junk in the padding.
    for src, dst in [(0, 1), (2, 3), (2, 4), (5, 6)]:
      lengths[dst] = lengths[src]
      mask[dst] = mask[src]
      ids[dst] = np.where(mask[src] == 1, ids[src], rng.integers(0, 30000, length))
    # Near duplicates: one token changed; a prefix (shorter length).
    ids[7] = ids[8]
    mask[7] = mask[8]
    ids[7, 0] = ids[8, 0] + 1
    mask[9] = mask[10]
    ids[9] = ids[10]
    mask[9, :] = 0
    mask[9, :max(int(mask[10].sum()) - 1, 1)] = 1
    keys = np.asarray(losses.text_identity_key(jnp.asarray(ids), jnp.asarray(mask)))
    assert keys.dtype == np.int32 and keys.shape == (batch,)
    texts = [tuple(ids[b][mask[b] == 1]) for b in range(batch)]
    same_text = np.array([[texts[i] == texts[j] for j in range(batch)] for i in range(batch)])
    same_key = keys[:, None] == keys[None, :]
    np.testing.assert_array_equal(same_key, same_text, err_msg=f"trial {trial}")
    assert same_text[0, 1] and same_text[2, 4] and not same_text[7, 8]
