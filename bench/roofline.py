"""Shared by the benchmarks: best-of timing, XLA FLOP counts, the matmul roofline."""

import time

import jax
import jax.numpy as jnp


def best_time(fn, repeats: int) -> float:
  """Best wall time of `fn()` (results waited for) over `repeats` calls, after one warm-up."""
  jax.block_until_ready(fn())
  best = float("inf")
  for _ in range(repeats):
    start = time.perf_counter()
    jax.block_until_ready(fn())
    best = min(best, time.perf_counter() - start)
  return best


def flops(compiled) -> float:
  """FLOPs XLA counts for a compiled computation."""
  analysis = compiled.cost_analysis()
  if isinstance(analysis, (list, tuple)):
    analysis = analysis[0]
  return float(analysis.get("flops", float("nan")))


def matmul_roofline(repeats: int = 5, size: int = 2048) -> float:
  """Best FLOP/s of an f32 [size, size] @ [size, size] matmul on the default device."""
  a = jax.random.normal(jax.random.key(0), (size, size), jnp.float32)
  b = jax.random.normal(jax.random.key(1), (size, size), jnp.float32)
  fn = jax.jit(jnp.matmul)
  return 2.0 * size**3 / best_time(lambda: fn(a, b), repeats)
