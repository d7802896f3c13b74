"""Playlisting strategies as the study runs them: per-session state, observe, score.

The patent's adaptive strategy (WO2024043931A1) after every event:

1. every listen, skip, like, dislike and text request is a weighted example
   of the session (`examples.History`, weights from `examples.WeightRules`);
2. cold start: nearest-neighbour retrieval around the session's positive
   examples (a text request, listened tracks) minus its negatives;
3. a weighted L2 logistic regression refit from scratch (`logreg.fit`, warm
   started from the previous event's solution);
4. a smooth hand-over from 2 to 3 as labelled evidence grows (a logistic
   ramp in the number of labelled examples, and only once both classes exist);
5. fusion with the long-term "mix ranker" (the listener's slow taste model),
   its weight decaying with evidence; the taste model itself moves slowly
   towards what is played, while tracks rejected in the current mood move it
   only weakly (a skip now says little about long-term taste).

Scores are standardised over the candidates before they are mixed, so the
mixing weights mean the same whatever the scale of each part. Every score is a
[N, d] @ [d] product; per-session work besides it is O(T^3) (the T x T Newton
systems) or O(T d).

Baselines: "adaptive_mlp" (the same, with a small MLP in place of the
linear classifier once `mlp_after` labelled examples exist: the model family
chosen by session length), "knn" (step 2 only), "linucb" (ridge regression with an upper
confidence bonus, in T-space by Woodbury), "thompson" (one draw from the
logistic regression's Laplace posterior per event). "initial", "shuffle",
"popularity" and "oracle" need no learner; the study scores them itself.
"""

from __future__ import annotations

import flax.struct
import jax
import jax.numpy as jnp
import optax

from jplaylist.session import examples
from jplaylist.session import logreg

STRATEGIES = ("adaptive", "adaptive_mlp", "classifier", "knn", "linucb", "thompson")
# The small MLP of "adaptive_mlp": hidden units and gradient steps per event.
MLP_HIDDEN = 16
MLP_STEPS = 20


@flax.struct.dataclass
class StrategyParams:
  """Settings of the learners, float32 scalars (a sweep vmaps over them).

  Weight rules (examples.WeightRules): text_weight, like_weight,
  listen_weight, skip_weight, dislike_weight, recency_decay, time_half_life_s.
  """
  rules: examples.WeightRules
  C: jax.Array = 1.0                  # inverse L2 strength of the classifier
  handover_at: jax.Array = 4.0        # labelled examples at which kNN and classifier weigh equal
  handover_width: jax.Array = 1.5     # examples over which the hand-over ramps
  knn_negative: jax.Array = 0.5       # weight of the negative centroid in kNN scores
  mix_weight: jax.Array = 0.5         # weight of the long-term ranker at no evidence
  mix_half_life: jax.Array = 5.0      # labelled examples that halve it
  taste_rate: jax.Array = 0.02        # taste-model step per listened track
  reject_taste_rate: jax.Array = 0.002  # ... per rejected track (weak)
  ucb_alpha: jax.Array = 1.0          # LinUCB exploration bonus
  ucb_ridge: jax.Array = 1.0          # LinUCB ridge
  thompson_scale: jax.Array = 1.0     # Laplace posterior scale
  mlp_after: jax.Array = 12.0         # labelled examples from which adaptive_mlp uses its MLP
  mlp_learning_rate: jax.Array = 0.05  # Adam step of the MLP refits

  @classmethod
  def create(cls, **overrides) -> StrategyParams:
    rule_fields = set(examples.WeightRules.__dataclass_fields__)
    rules = examples.WeightRules.create(**{k: v for k, v in overrides.items()
                                           if k in rule_fields})
    values = {f: getattr(cls, f) for f in cls.__dataclass_fields__ if f != "rules"}
    unknown = set(overrides) - rule_fields - set(values)
    if unknown:
      raise ValueError(f"unknown strategy parameters {sorted(unknown)}; known: "
                       f"{sorted(rule_fields | set(values))}")
    values.update({k: v for k, v in overrides.items() if k in values})
    return cls(rules=rules, **{k: jnp.asarray(v, jnp.float32) for k, v in values.items()})

  def with_values(self, **overrides) -> StrategyParams:
    """A copy with some fields (strategy or weight-rule fields) changed."""
    rule_fields = set(examples.WeightRules.__dataclass_fields__)
    unknown = set(overrides) - rule_fields - set(self.__dataclass_fields__)
    if unknown:
      raise ValueError(f"unknown strategy parameters {sorted(unknown)}")
    as_array = lambda v: jnp.asarray(v, jnp.float32)
    rules = self.rules.replace(**{k: as_array(v) for k, v in overrides.items()
                                  if k in rule_fields})
    return self.replace(rules=rules, **{k: as_array(v) for k, v in overrides.items()
                                        if k not in rule_fields})


@flax.struct.dataclass
class State:
  """One session's learner state.

  history: the examples. gram: [T, T] history.x @ history.x.T, kept up to
  date one row per example. fit: the last classifier fit (warm start).
  taste: [d] the long-term taste model (unit norm).
  """
  history: examples.History
  gram: jax.Array
  fit: logreg.LogRegFit
  taste: jax.Array
  mlp: dict


def init_state(max_examples: int, dim: int, taste) -> State:
  """An empty session for a listener whose long-term taste model is `taste` [d]."""
  return State(history=examples.History.empty(max_examples, dim),
               gram=jnp.zeros((max_examples, max_examples), jnp.float32),
               fit=logreg.LogRegFit(coef=jnp.zeros((dim,), jnp.float32),
                                    intercept=jnp.zeros((), jnp.float32),
                                    alpha=jnp.zeros((max_examples,), jnp.float32)),
               taste=jnp.asarray(taste, jnp.float32),
               mlp=init_mlp(jax.random.key(0), dim))


def init_mlp(rng, dim: int, hidden: int = MLP_HIDDEN) -> dict:
  """Parameters of the session MLP d -> hidden (tanh) -> 1."""
  return {"w1": jax.random.normal(rng, (dim, hidden), jnp.float32) / jnp.sqrt(dim),
          "b1": jnp.zeros((hidden,), jnp.float32),
          "w2": jnp.zeros((hidden,), jnp.float32), "b2": jnp.zeros((), jnp.float32)}


def mlp_logits(mlp: dict, x):
  """[..., d] -> [...] logits of the session MLP."""
  return jnp.tanh(x @ mlp["w1"] + mlp["b1"]) @ mlp["w2"] + mlp["b2"]


def fit_mlp(mlp: dict, x, label, weights, *, C, learning_rate, num_steps: int = MLP_STEPS):
  """Refits the MLP on weighted examples: `num_steps` Adam steps, warm-started.

  The objective is the classifier's: 0.5 |params|^2 + C sum_i w_i logloss_i,
  divided by 1 + C sum_i w_i so the step size means the same at any evidence.
  """
  scale = 1.0 + C * jnp.sum(weights)

  def objective(params):
    z = mlp_logits(params, x)
    logloss = jnp.logaddexp(0.0, z) - label * z
    penalty = sum(jnp.sum(p * p) for k, p in params.items() if k.startswith("w"))
    return (0.5 * penalty + C * jnp.sum(weights * logloss)) / scale

  optimizer = optax.adam(learning_rate)

  def step(carry, _):
    params, opt_state = carry
    updates, opt_state = optimizer.update(jax.grad(objective)(params), opt_state)
    return (optax.apply_updates(params, updates), opt_state), None

  (mlp, _), _ = jax.lax.scan(step, (mlp, optimizer.init(mlp)), None, length=num_steps)
  return mlp


def _with_gram_row(state: State, history: examples.History, slot) -> State:
  row = history.x @ history.x[jnp.minimum(slot, history.max_examples - 1)]
  row = jnp.where(history.mask, row, 0.0)
  valid = slot < history.max_examples
  index = jnp.where(valid, slot, history.max_examples)
  gram = state.gram.at[index].set(row, mode="drop").at[:, index].set(row, mode="drop")
  return state.replace(history=history, gram=gram)


def observe_text(state: State, x, event, elapsed, valid=True) -> State:
  """A text request (label 1, A = 0) with embedding x [d], if `valid`."""
  slot = state.history.num_examples
  history = state.history.append_text(x, event, elapsed, valid)
  new = _with_gram_row(state, history, slot)
  return jax.tree.map(lambda a, b: jnp.where(valid, a, b), new, state)


def observe_track(state: State, params: StrategyParams, x, kind, event, elapsed) -> State:
  """A served track's outcome (`examples` kind) with audio embedding x [d]."""
  slot = state.history.num_examples
  history = state.history.append_track(x, kind, event, elapsed)
  state = _with_gram_row(state, history, slot)
  # The slow taste model: a step towards what was played in full, a much
  # smaller one away from what was rejected in this mood.
  accepted = (kind == examples.LISTEN) | (kind == examples.LIKE)
  rejected = (kind == examples.SKIP) | (kind == examples.DISLIKE)
  step = jnp.where(accepted, params.taste_rate, 0.0) - jnp.where(
      rejected, params.reject_taste_rate, 0.0)
  taste = state.taste + step * x
  return state.replace(taste=taste / jnp.maximum(jnp.linalg.norm(taste), 1e-12))


def candidate_stats(cand):
  """(mean [d], covariance [d, d]) of candidate embeddings [N, d].

  With them a score c @ v is standardised over the candidates without the
  [N] pass: its mean is mean @ v and its variance v @ covariance @ v.
  """
  mean = jnp.mean(cand, axis=0)
  centred = cand - mean
  return mean, centred.T @ centred / cand.shape[0]


def standardized(direction, stats):
  """(v / std, mean @ v / std): c @ v standardised = c @ first - second."""
  mean, cov = stats
  std = jnp.sqrt(jnp.maximum(direction @ cov @ direction, 1e-12))
  return direction / std, (mean @ direction) / std


def knn_query(history: examples.History, weights, negative_weight):
  """[d] query of the cold-start retrieval: the weighted centroid of positive
  examples minus `negative_weight` times that of negatives (both unit norm)."""
  positive = weights * history.label
  negative = weights * (1.0 - history.label)
  unit = lambda v: v / jnp.maximum(jnp.linalg.norm(v), 1e-12)
  return unit(positive @ history.x) - negative_weight * unit(negative @ history.x)


def handover(history: examples.History, weights, params: StrategyParams):
  """[] weight of the classifier against kNN: 0 until both classes are seen,
  then a logistic ramp in the number of labelled examples."""
  evidence = examples.evidence(history)
  both = (jnp.sum(weights * history.label) > 0) & (jnp.sum(weights * (1 - history.label)) > 0)
  ramp = jax.nn.sigmoid((evidence - params.handover_at) / params.handover_width)
  return jnp.where(both, ramp, 0.0)


def mix_weight(history: examples.History, params: StrategyParams):
  """[] weight of the long-term ranker: mix_weight, halved every mix_half_life examples."""
  return params.mix_weight * jnp.exp2(-examples.evidence(history) / params.mix_half_life)


def _linucb(state: State, weights, params: StrategyParams, cand):
  """Weighted ridge regression on y with an upper confidence bonus, in T-space.

  A = ridge I + X^T W X; theta = A^-1 X^T W y; bonus = alpha sqrt(c^T A^-1 c),
  A^-1 = (I - X^T S (ridge I + S K S)^-1 S X) / ridge with S = W^1/2.
  """
  history = state.history
  root = jnp.sqrt(weights)
  t = history.max_examples
  system = params.ucb_ridge * jnp.eye(t) + root[:, None] * state.gram * root[None, :]
  projected = (cand @ history.x.T) * root[None, :]          # [N, T] c^T X^T S
  # One solve for both right-hand sides; logreg.spd_solve keeps LAPACK
  # batches small (larger ones can deadlock jaxlib 0.10 on several CPU devices).
  solved = logreg.spd_solve(system, jnp.concatenate(
      [(root * history.label)[:, None], projected.T], axis=1))
  # theta = X^T S (ridge I + S K S)^-1 S y  (push-through identity).
  theta = (root * solved[:, 0]) @ history.x
  quad = jnp.sum(cand * cand, axis=1) - jnp.sum(projected * solved[:, 1:].T, axis=1)
  return cand @ theta + params.ucb_alpha * jnp.sqrt(jnp.maximum(quad, 0.0) / params.ucb_ridge)


def score(strategy: str, state: State, params: StrategyParams, cand, stats, event, elapsed,
          rng, *, num_newton: int = logreg.NUM_NEWTON):
  """Scores of the candidates for one session at `event`.

  Args:
    strategy: one of STRATEGIES (static).
    state: the session's learner state.
    params: settings.
    cand: [N, d] candidate embeddings.
    stats: `candidate_stats(cand)`.
    event: [] current event index; elapsed: [] session seconds.
    rng: key (Thompson sampling).
    num_newton: Newton iterations of the classifier refit, warm-started from
      the previous event's fit (static).

  Returns:
    (scores [N], state with the new fit).
  """
  history = state.history
  weights = examples.weights(history, params.rules, event, elapsed)
  if strategy == "knn":
    return cand @ knn_query(history, weights, params.knn_negative), state
  if strategy == "linucb":
    return _linucb(state, weights, params, cand), state
  fit = logreg.fit(history.x, history.label, weights, C=params.C, init=state.fit,
                   gram=state.gram, num_newton=num_newton)
  state = state.replace(fit=fit)
  if strategy == "classifier":
    return cand @ fit.coef + fit.intercept, state
  if strategy == "thompson":
    coef, intercept = logreg.laplace_sample(rng, fit, history.x, history.label, weights,
                                            C=params.C, scale=params.thompson_scale,
                                            gram=state.gram)
    return cand @ coef[0] + intercept[0], state
  if strategy not in ("adaptive", "adaptive_mlp"):
    raise ValueError(f"unknown strategy {strategy!r}; known: {STRATEGIES}")
  # Each part standardised over the candidates, then mixed: still one
  # [N, d] @ [d] product, since standardising a linear score is linear.
  lam = handover(history, weights, params)
  rho = mix_weight(history, params)
  use_mlp = jnp.float32(0.0)
  if strategy == "adaptive_mlp":  # the model family follows the evidence
    use_mlp = (examples.evidence(history) >= params.mlp_after).astype(jnp.float32)
  parts = [(knn_query(history, weights, params.knn_negative), (1.0 - rho) * (1.0 - lam)),
           (fit.coef, (1.0 - rho) * lam * (1.0 - use_mlp)), (state.taste, rho)]
  direction, offset = jnp.zeros_like(state.taste), jnp.float32(0.0)
  for vector, weight in parts:
    unit, shift = standardized(vector, stats)
    direction += weight * unit
    offset += weight * shift
  scores = cand @ direction - offset
  if strategy == "adaptive_mlp":
    mlp = fit_mlp(state.mlp, history.x, history.label, weights, C=params.C,
                  learning_rate=params.mlp_learning_rate)
    state = state.replace(mlp=mlp)
    nonlinear = mlp_logits(mlp, cand)
    standard = (nonlinear - jnp.mean(nonlinear)) / jnp.maximum(jnp.std(nonlinear), 1e-6)
    scores = scores + (1.0 - rho) * lam * use_mlp * standard
  return scores, state
