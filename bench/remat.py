r"""Memory of a two-tower train step with and without rematerialised towers.

  python -m bench.remat                               # small and mid, batch 8
  python -m bench.remat --models=mid,large --batch=16
  python -m bench.remat --models=large --batch=4 --nocompile   # residuals only

For each model size and each remat setting (none, audio, text, both), the
gradient of a contrastive (InfoNCE) loss over one batch of 10-s int16 windows
with lengths and 64-token texts is traced and compiled (not run), and two
figures are read:

  residuals: the bytes of the forward pass's values the backward pass keeps
    (`jax.ad_checkpoint.print_saved_residuals`' list, less parameters and
    batch, which are held anyway). It is what remat exists to cut, and it
    does not depend on the backend or its scheduler.
  temp: XLA's compiled memory analysis, temporary bytes (kept activations
    and scratch at the scheduled peak) on the device the step compiles for;
    argument + output bytes (parameters, batch, gradients) are printed once.

On the CPU backend temp does not fall with remat, even for a plain stack of
rematerialised Dense layers (84 -> 160 MiB for 20 layers of [2048, 512]):
its scheduler does not hold the recomputation back to the backward pass.
Read temp on an accelerator, residuals anywhere.

The towers are rematerialised layer by layer (two_tower.Model.audio_remat
and text_remat: each ResNet residual block, each AST or BERT layer): the
backward pass keeps only the layers' inputs and recomputes one layer at a
time. What remat cannot cut is the largest single layer's own backward pass:
in the M-ResNet that is the stride-1 stem at full log-mel resolution (not a
residual block), so the peak falls only where the blocks' activations
together outweigh the stem's (ResNet-50's 256-channel bottlenecks; not the
tiny or 18 trunks). The log-mel frontend is left alone: no parameter lies
below it, so its intermediates are never kept for a backward pass.

Sizes: small = ResNet tiny + BERT tiny (the runlocal demo); mid = ResNet-18 +
MiniLM-L6 (the demo); large = ResNet-50 + BERT-base (M-ResNet-50).
"""

from absl import app
from absl import flags
import jax
import jax.numpy as jnp
import numpy as np
# Private, but the list the public `jax.ad_checkpoint.print_saved_residuals`
# prints, as data.
from jax._src.ad_checkpoint import saved_residuals

from configs import common
from jplaylist.audio import frontend as frontend_lib
from jplaylist.models import two_tower

SIZES = {"small": ("tiny", "tiny"), "mid": ("18", "minilm-l6"), "large": ("50", "base")}
SETTINGS = {"none": (False, False), "audio": (True, False), "text": (False, True),
            "both": (True, True)}

_MODELS = flags.DEFINE_list("models", ["small", "mid"], f"Sizes among {list(SIZES)}.")
_BATCH = flags.DEFINE_integer("batch", 8, "Examples per step.")
_TEXT_LENGTH = flags.DEFINE_integer("text_length", 64, "Tokens per text.")
_COMPILE = flags.DEFINE_bool("compile", True, "Also compile each step for XLA's temp "
                             "bytes (minutes per step on a CPU); --nocompile traces only.")

_MIB = 2.0**20


def _model(size: str, audio_remat: bool, text_remat: bool) -> two_tower.Model:
  audio_variant, text_variant = SIZES[size]
  config = common.model(audio_variant=audio_variant, text_variant=text_variant)
  config.audio_remat, config.text_remat = audio_remat, text_remat
  return two_tower.Model.from_config(config)


def _batch(batch: int, text_length: int, num_samples: int):
  rng = np.random.default_rng(0)
  audio = rng.integers(-3000, 3000, (batch, num_samples)).astype(np.int16)
  lengths = np.full(batch, num_samples, np.int32)
  ids = rng.integers(1000, 5000, (batch, text_length)).astype(np.int32)
  return audio, ids, np.ones_like(ids), lengths


def compiled_memory(model: two_tower.Model, batch: int, text_length: int,
                    compile_step: bool = True) -> dict:
  """Saved residuals and compiled memory of value_and_grad of one train-mode step."""
  variables = jax.eval_shape(lambda: two_tower.init(model, jax.random.key(0)))
  num_samples = frontend_lib.decode(model.frontend).window_samples
  audio, ids, mask, lengths = _batch(batch, text_length, num_samples)
  others = {k: v for k, v in variables.items() if k != "params"}

  def loss(params, others, audio, ids, mask, lengths, key):
    (za, zt, temperature), state = model.apply(
        {"params": params, **others}, audio, ids, mask, lengths, train=True,
        mutable=["batch_stats"], rngs={"specaugment": key, "dropout": key})
    logits = za @ zt.T / temperature
    labels = jnp.arange(logits.shape[0])
    loss = -0.5 * (jnp.mean(jax.nn.log_softmax(logits, 1)[labels, labels])
                   + jnp.mean(jax.nn.log_softmax(logits, 0)[labels, labels]))
    return loss, state

  kept = saved_residuals(
      lambda params, others: loss(params, others, audio, ids, mask, lengths,
                                  jax.random.key(1))[0], variables["params"], others)
  # Residuals that are inputs (parameters, batch) stay in memory anyway.
  residuals = sum(aval.size * aval.dtype.itemsize for aval, origin in kept
                  if not origin.startswith("from the argument") and "constant" not in origin)
  if not compile_step:
    return {"residuals": residuals, "temp": float("nan"), "args+out": float("nan")}
  grad_fn = jax.value_and_grad(loss, has_aux=True)
  compiled = jax.jit(grad_fn).lower(variables["params"], others, audio, ids, mask, lengths,
                                    jax.random.key(1)).compile()
  memory = compiled.memory_analysis()
  return {"residuals": residuals, "temp": memory.temp_size_in_bytes,
          "args+out": memory.argument_size_in_bytes + memory.output_size_in_bytes}


def main(argv):
  del argv
  print(f"device {jax.devices()[0].device_kind}, batch {_BATCH.value}, 10-s windows, "
        f"{_TEXT_LENGTH.value} tokens")
  for size in _MODELS.value:
    rows = {name: compiled_memory(_model(size, *flags_), _BATCH.value, _TEXT_LENGTH.value,
                                  _COMPILE.value)
            for name, flags_ in SETTINGS.items()}
    base = rows["none"]
    held = (f": arguments + outputs {base['args+out'] / _MIB:.1f} MiB"
            if _COMPILE.value else "")
    print(f"\n{size} (audio {SIZES[size][0]}, text {SIZES[size][1]}){held}")
    print(f"  {'remat':<6} {'residuals MiB':>14} {'vs none':>8} {'temp MiB':>10} {'vs none':>8}")
    for name, row in rows.items():
      print(f"  {name:<6} {row['residuals'] / _MIB:>14.1f} "
            f"{row['residuals'] / base['residuals']:>8.2f} {row['temp'] / _MIB:>10.1f} "
            f"{row['temp'] / base['temp']:>8.2f}", flush=True)


if __name__ == "__main__":
  app.run(main)
