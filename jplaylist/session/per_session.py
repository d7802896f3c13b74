"""Per-event and per-session metrics of the study's records (host-side numpy).

The study (`jplaylist.session.study`) records, for S strategies x B sessions x
E events, the served track's true listen probability, the oracle's, skips,
listens and mood switches (the `results` dict, see `summary.summarize`):
  `per_event_curves`    metric curves over events (mean over sessions), and
                        `per_event_bands` their 95% normal-approximation bands.
  `adaptation_delays`   per mood switch: events to the first listen and to
                        recover `recovery_fraction` of the oracle's listen rate.
  `adaptation_curves`   listen rate and first-listen probability after switches.
  `per_session_metrics` one value per strategy and session (what the
                        bootstrap of `jplaylist.session.bootstrap` resamples).
"""

from __future__ import annotations

import dataclasses

import numpy as np

@dataclasses.dataclass
class _Inputs:
  """The results dict broadcast to [S, B, E] (strategy x session x event)."""
  served: np.ndarray
  oracle: np.ndarray
  skipped: np.ndarray
  mask: np.ndarray             # [S, B, E] bool, event happened
  raw: dict

  @property
  def shape(self):
    return self.served.shape


def _inputs(results: dict) -> _Inputs:
  for key in ("served_prob", "oracle_prob", "skipped"):
    if key not in results:
      raise KeyError(f"results lacks {key!r}: needs served_prob [S,B,E], oracle_prob [B,E] "
                     f"or [S,B,E], skipped [S,B,E]")
  served = np.asarray(results["served_prob"], np.float64)
  if served.ndim != 3:
    raise ValueError(f"results['served_prob'] must be [S, B, E], got shape {served.shape}")

  def full(key, dtype):
    value = np.asarray(results[key], dtype)
    try:
      return np.broadcast_to(value, served.shape)
    except ValueError:
      raise ValueError(f"results[{key!r}] has shape {value.shape}, which does not broadcast "
                       f"to [S, B, E] = {served.shape}") from None

  mask = full("mask", bool) if "mask" in results else np.ones(served.shape, bool)
  return _Inputs(served, full("oracle_prob", np.float64), full("skipped", bool), mask,
                 {key: results[key] for key in results})


def _masked_mean(x: np.ndarray, mask: np.ndarray, axis: int) -> np.ndarray:
  """Mean of x over axis where mask and x is finite (NaN where none)."""
  keep = mask & np.isfinite(x)
  with np.errstate(invalid="ignore", divide="ignore"):
    return np.where(keep, x, 0.0).sum(axis) / keep.sum(axis)


def _event_series(inputs: _Inputs, k: int) -> dict[str, tuple[np.ndarray, str, bool]]:
  """name -> ([S, B, E] per-event values, description, higher_is_better)."""
  series = {
      "skip_rate": (inputs.skipped, "fraction of served tracks skipped before the end", False)}
  if "early_skipped" in inputs.raw:
    series["early_skip_rate"] = (np.broadcast_to(np.asarray(inputs.raw["early_skipped"], bool),
                                                 inputs.shape),
                                 "fraction of served tracks skipped early", False)
  series["listen_rate"] = (inputs.served, "expected listen rate: mean true listen "
                           "probability of the served tracks", True)
  series["oracle_listen_rate"] = (inputs.oracle, "the oracle's listen rate (best available "
                                  "true probability)", True)
  if "listened" in inputs.raw:
    series["realised_listen_rate"] = (np.broadcast_to(np.asarray(inputs.raw["listened"], bool),
                                                      inputs.shape),
                                      "fraction of served tracks listened to", True)
  for key, name, text in (("ndcg", f"ndcg@{k}", f"nDCG@{k} of the re-sorted remainder"),
                          ("precision", f"precision@{k}",
                           f"precision@{k} of the re-sorted remainder")):
    if key in inputs.raw:
      series[name] = (np.broadcast_to(np.asarray(inputs.raw[key], np.float64), inputs.shape),
                      text, True)
  return series


def per_event_curves(results: dict, *, k: int = 10) -> dict[str, np.ndarray]:
  """Metric curves over events: name -> [S, E], mean over the sessions at each event.

  Holds skip_rate, early_skip_rate (if given), listen_rate (served p),
  oracle_listen_rate, realised_listen_rate (if `listened` given),
  cumulative_reward (sum of served p so far), cumulative_regret (sum of
  oracle - served so far), ndcg@k / precision@k (if given). NaN where no
  session reaches an event.
  """
  inputs = _inputs(results)
  curves = {name: _masked_mean(values.astype(np.float64), inputs.mask, axis=1)
            for name, (values, _, _) in _event_series(inputs, k).items()}
  served = np.where(inputs.mask, inputs.served, 0.0)
  oracle = np.where(inputs.mask, inputs.oracle, 0.0)
  curves["cumulative_reward"] = _masked_mean(np.cumsum(served, -1), inputs.mask, axis=1)
  curves["cumulative_regret"] = _masked_mean(np.cumsum(oracle - served, -1), inputs.mask, axis=1)
  return curves


def per_event_bands(results: dict, *, k: int = 10, z: float = 1.96
                    ) -> dict[str, tuple[np.ndarray, np.ndarray]]:
  """Pointwise bands of `per_event_curves`: name -> (lo [S, E], hi [S, E]).

  mean +- z standard errors over the sessions at each event (a normal
  approximation, z = 1.96 for 95%: a bootstrap per event and curve would cost
  far more for a band drawn in a plot). NaN where fewer than two sessions
  reach an event.
  """
  inputs = _inputs(results)
  series = {name: values.astype(np.float64) for name, (values, _, _) in
            _event_series(inputs, k).items()}
  served = np.where(inputs.mask, inputs.served, 0.0)
  oracle = np.where(inputs.mask, inputs.oracle, 0.0)
  series["cumulative_reward"] = np.cumsum(served, -1)
  series["cumulative_regret"] = np.cumsum(oracle - served, -1)
  out = {}
  for name, values in series.items():
    keep = inputs.mask & np.isfinite(values)
    count = keep.sum(1)
    x = np.where(keep, values, 0.0)
    with np.errstate(invalid="ignore", divide="ignore"):
      mean = x.sum(1) / count
      variance = (np.where(keep, (values - mean[:, None, :]) ** 2, 0.0).sum(1)
                  / (count - 1))
      half = z * np.sqrt(variance / count)
    half = np.where(count > 1, half, np.nan)
    out[name] = (mean - half, mean + half)
  return out


# ------------------------------------------------------------------ adaptation


def adaptation_delays(results: dict, *, window: int = 3,
                      recovery_fraction: float = 0.9) -> dict[str, np.ndarray]:
  """How fast each strategy adapts after each mood switch.

  A switch at event e (switch[b, e]) starts a segment that runs to the next
  switch or the session's end (the first masked event), exclusive; the track
  served at e is the first under the new mood. Within the segment, at offset
  j = 0, 1, ... (event e + j):

    first_listen  j of the first realised listen (0: the first track after
                  the switch was listened to).
    recovery      first j where the trailing mean of the served true
                  probability over the last `window` events of the segment
                  (fewer at its start; earlier moods never count) reaches
                  `recovery_fraction` x the oracle's mean over the same events.

  When it never happens in the segment the delay is censored: it is set to the
  segment length (a lower bound, so means of delays are restricted means) and
  flagged.

  Args:
    results: the dict of `summarize`; needs served_prob, oracle_prob, switch,
      and listened for first_listen (left out without it).
    window: trailing window of the recovery, in events.
    recovery_fraction: fraction of the oracle's listen rate to recover.

  Returns:
    dict of per-switch arrays, M switches: session [M], event [M],
    has_text [M] bool, segment_length [M]; first_listen, first_listen_censored,
    recovery, recovery_censored: [S, M]; served, oracle: [S, M, E] values at
    offsets (0 past the segment end), inside [M, E] bool.
  """
  inputs = _inputs(results)
  _, num_sessions, num_events = inputs.shape
  if "switch" not in results:
    raise KeyError("results lacks 'switch' [B, E] bool: adaptation needs the mood switches")
  mask = inputs.mask[0]  # session lengths come from the shared session plan
  switch = np.broadcast_to(np.asarray(results["switch"], bool), mask.shape) & mask
  text = np.broadcast_to(np.asarray(results.get("switch_text", np.zeros_like(switch)), bool),
                         mask.shape)
  breaks = switch | ~mask
  next_break = np.empty(mask.shape, np.int64)
  upcoming = np.full(num_sessions, num_events)
  for event in range(num_events - 1, -1, -1):
    next_break[:, event] = upcoming
    upcoming = np.where(breaks[:, event], event, upcoming)

  session, event = np.nonzero(switch)
  length = next_break[session, event] - event
  offsets = np.arange(num_events)
  inside = offsets[None, :] < length[:, None]
  position = np.minimum(event[:, None] + offsets[None, :], num_events - 1)

  def gather(x):  # [S, B, E] -> [S, M, E], zero past the segment
    return np.where(inside, x[:, session[:, None], position], 0)

  def first(hit):  # [S, M, E] bool -> (offset of first hit or length, censored)
    found = hit.any(-1)
    return np.where(found, hit.argmax(-1), length[None, :]), ~found

  served, oracle = gather(inputs.served), gather(inputs.oracle)
  trailing = []
  for x in (served, oracle):
    total = np.cumsum(x, -1)
    shifted = np.concatenate([np.zeros(x.shape[:-1] + (window,)), total], -1)[..., :num_events]
    trailing.append((total - shifted) / np.minimum(offsets + 1, window))
  recovered = inside & (trailing[0] >= recovery_fraction * trailing[1])
  out = dict(session=session, event=event, has_text=text[session, event],
             segment_length=length, inside=inside, served=served, oracle=oracle)
  out["recovery"], out["recovery_censored"] = first(recovered)
  if "listened" in results:
    listened = np.broadcast_to(np.asarray(results["listened"], bool), inputs.shape)
    out["first_listen"], out["first_listen_censored"] = first(gather(listened).astype(bool))
  return out


def adaptation_curves(results: dict, *, horizon: int = 10, window: int = 3,
                      recovery_fraction: float = 0.9) -> dict:
  """Mean behaviour at each offset after a switch, split by text request.

  Returns:
    {"offsets": [H], "recovery_fraction": float, "text" and "no_text": {
      "served": [S, H] mean served true probability over the switches whose
        segment reaches that offset, "oracle": [S, H] the same for the oracle,
      "ratio": [S, H] served / oracle, "listened_by": [S, H] Kaplan-Meier
        probability of a first listen by that offset (censoring at the segment
        end; NaN once no switch is at risk, or without `listened`),
      "num_switches": int}}.
  """
  delays = adaptation_delays(results, window=window, recovery_fraction=recovery_fraction)
  horizon = min(horizon, delays["inside"].shape[1])
  out = {"offsets": np.arange(horizon), "recovery_fraction": recovery_fraction}
  for group, selected in (("text", delays["has_text"]), ("no_text", ~delays["has_text"])):
    inside = delays["inside"][selected, :horizon]
    count = inside.sum(0)
    with np.errstate(invalid="ignore", divide="ignore"):
      served = delays["served"][:, selected, :horizon].sum(1) / count
      oracle = delays["oracle"][:, selected, :horizon].sum(1) / count
      ratio = served / oracle
    listened_by = np.full(served.shape, np.nan)
    if "first_listen" in delays:
      delay = delays["first_listen"][:, selected, None]
      censored = delays["first_listen_censored"][:, selected, None]
      at_risk = (delay >= np.arange(horizon)).sum(1) - (censored & (delay == np.arange(
          horizon))).sum(1)
      events = (~censored & (delay == np.arange(horizon))).sum(1)
      with np.errstate(invalid="ignore", divide="ignore"):
        hazard = np.where(at_risk > 0, events / at_risk, np.nan)
      listened_by = 1.0 - np.cumprod(1.0 - hazard, axis=1)
    out[group] = dict(served=served, oracle=oracle, ratio=ratio, listened_by=listened_by,
                      num_switches=int(selected.sum()))
  return out


# ------------------------------------------------------------------ per session


@dataclasses.dataclass
class SessionMetric:
  """One metric's per-session values: mean over sessions weighted by `weights`."""
  values: np.ndarray           # [S, B], NaN where undefined for a session
  weights: np.ndarray          # [B]
  description: str
  higher_is_better: bool | None


def per_session_metrics(results: dict, *, k: int = 10, window: int = 3,
                        recovery_fraction: float = 0.9) -> dict[str, SessionMetric]:
  """Per strategy and session: name -> SessionMetric with values [S, B].

  Rates are means over the session's events; cumulative_reward and regret are
  sums. auc (if given as [S, B] or [S, B, E]) is averaged over events.
  Adaptation metrics average over the session's switches of each kind and
  are weighted by their number, so the overall mean is over switches.
  """
  inputs = _inputs(results)
  num_strategies, num_sessions, _ = inputs.shape
  ones = np.ones(num_sessions)
  out = {name: SessionMetric(_masked_mean(values.astype(np.float64), inputs.mask, -1), ones,
                             text, better)
         for name, (values, text, better) in _event_series(inputs, k).items()}
  served = np.where(inputs.mask, inputs.served, 0.0)
  out["cumulative_reward"] = SessionMetric(served.sum(-1), ones,
                                           "sum of the served true probabilities", True)
  out["regret"] = SessionMetric(np.where(inputs.mask, inputs.oracle, 0.0).sum(-1) - served.sum(-1),
                                ones, "sum of oracle - served true probability", False)
  if "auc" in results:
    auc = np.asarray(results["auc"], np.float64)
    if auc.ndim == 3:
      auc = _masked_mean(np.broadcast_to(auc, inputs.shape), inputs.mask, -1)
    out["auc"] = SessionMetric(np.broadcast_to(auc, (num_strategies, num_sessions)), ones,
                               "AUC-ROC of the classifier in the session", True)
  if "switch" not in results:
    return out
  delays = adaptation_delays(results, window=window, recovery_fraction=recovery_fraction)
  measures = [("recovery", f"events to recover {recovery_fraction:.0%} of the oracle's listen "
               f"rate (trailing {window})")]
  if "first_listen" in delays:
    measures.insert(0, ("first_listen", "events after a switch before the first listen"))
  for group, selected in (("text", delays["has_text"]), ("no_text", ~delays["has_text"])):
    session = delays["session"][selected]
    count = np.bincount(session, minlength=num_sessions).astype(np.float64)
    label = "switches with a text request" if group == "text" else "switches without text"
    for name, text in measures:
      for suffix, key, about, better in (("", name, text, False),
                                         ("_censored", name + "_censored",
                                          "fraction censored: " + text, None)):
        per_switch = delays[key][:, selected].astype(np.float64)
        sums = np.stack([np.bincount(session, per_switch[s], minlength=num_sessions)
                         for s in range(num_strategies)])
        with np.errstate(invalid="ignore", divide="ignore"):
          out[f"{name}{suffix}/{group}"] = SessionMetric(sums / count, count,
                                                         f"{about}, {label}", better)
  return out
