"""Pieces shared by experiment configs; each returns a fresh ConfigDict."""

import ml_collections


def parse_arg(arg: str | None, **defaults: str) -> dict[str, str]:
  """`--config=file.py:key=value,...` as a dict over `defaults`; unknown keys fail.

  Every value stays a string; `is_true` reads the boolean ones.
  """
  fields = dict(defaults)
  for item in filter(None, (arg or "").split(",")):
    key, _, value = item.partition("=")
    if key not in fields:
      raise ValueError(f"unknown config argument {key!r}; known: {', '.join(fields)}")
    fields[key] = value
  return fields


def is_true(value: str) -> bool:
  return value.lower() in ("1", "true", "yes")


def input_pipeline(*, data_dir: str = "data", dataset: str = "demo",
                   batch_size: int = 32) -> ml_collections.ConfigDict:
  """Where the training data is and how examples are drawn (see data/pipeline.py)."""
  config = ml_collections.ConfigDict()
  config.data_dir = data_dir
  config.dataset = dataset             # data_dir/music_text/<dataset>/1.0.0
  config.train_split = "train"
  config.eval_split = "validation"
  config.batch_size = batch_size       # global; each host takes batch_size / hosts
  config.window_seconds = 10.0
  config.max_text_length = 64
  # The patent's mix of text sources, SF:LF:PL:ASET = 2:2:1:1.
  config.source_weights = ml_collections.ConfigDict(
      {"SF": 2.0, "LF": 2.0, "PL": 1.0, "ASET": 1.0})
  config.worker_count = 0
  config.num_shards = 0                # input shards; 0: one per process
  config.vocab_path = ml_collections.FieldReference(None, field_type=str)
  return config


def model(*, audio_tower: str = "resnet", audio_variant: str = "50",
          text_variant: str = "base", embed_dim: int = 128,
          initial_temperature: float = 0.1) -> ml_collections.ConfigDict:
  """The two-tower model (jplaylist/models/two_tower.py), fields as its Model's."""
  config = ml_collections.ConfigDict()
  config.audio_tower = audio_tower           # "resnet" | "ast"
  config.audio_variant = audio_variant       # resnet: 50, 18, tiny; ast: base, small, tiny
  config.text_variant = text_variant         # base, minilm-l6, tiny
  # The frontend follows the tower: 64 Slaney mels for the ResNet; for AST the
  # normalised Kaldi fbanks AudioSet AST was trained on (runs made before
  # this used "ast", Slaney dB, which stays available under that name).
  config.frontend = "ast_kaldi" if audio_tower == "ast" else "resnet"
  config.embed_dim = embed_dim
  config.initial_temperature = initial_temperature
  config.text_dropout = 0.1
  config.train_text_encoder = True
  # Pool the ResNet only over frames of real audio (from the batch's
  # audio_length): short clips are no longer diluted by end padding. This one
  # changes behaviour against earlier runs; False restores the plain mean.
  config.pool_valid_frames = True
  config.audio_pooling = "mean"              # mean | mean_std | mean_max (ResNet)
  config.audio_onset_channel = False         # ResNet: spectral flux as a 2nd input channel
  config.audio_key_profiles = 0              # ResNet: k learned key profiles of the pitch classes
  config.audio_tempo_bands = 0               # ResNet: onset autocorrelation in k lag bands
  config.text_pooling = "cls"                # cls | mean (over real tokens)
  config.train_text_layers = -1              # -1: all; k: only the top k layers
  # Recompute a whole tower's activations in the backward pass (flax
  # nn.remat), for one more forward pass; what it saves: bench/remat.py.
  config.audio_remat = False
  config.text_remat = False
  # A frozen copy of the trained text layers as they started, for the loss's
  # text_distill_weight (needs train_text_layers >= 0).
  config.text_teacher = False
  config.specaugment = ml_collections.ConfigDict(dict(
      num_time_masks=2, max_time_width=40, num_freq_masks=2, max_freq_width=8))
  return config


def optimizer(*, learning_rate: float = 5e-5, warmup_steps: int = 0,
              weight_decay: float = 1e-4) -> ml_collections.ConfigDict:
  """Adam with decoupled weight decay and the patent's step decay (x0.9 / 40K steps)."""
  config = ml_collections.ConfigDict()
  config.learning_rate = learning_rate
  config.decay_steps = 40_000
  config.decay_rate = 0.9
  config.warmup_steps = warmup_steps
  config.b1 = 0.9
  config.b2 = 0.999
  config.eps = 1e-8
  config.weight_decay = weight_decay
  config.grad_clip_norm = 0.0          # 0: no clipping
  config.accumulation_steps = 1        # micro-batches per update
  # Gradient caching (trainers/grad_cache.py): the towers see B / K examples
  # at a time, the loss the whole batch; 0 or 1: off. Not with accumulation.
  config.gradient_cache_microbatches = 0
  # (regex on the parameter path, steps): e.g. (("^text/", 1000),) keeps the
  # text tower frozen for its first 1000 steps.
  config.freeze = ()
  # Learning rate of the text tower ("^text/") relative to the rest.
  config.text_learning_rate_scale = 1.0
  return config


def loss(*, kind: str = "mulan", implementation: str = "gather") -> ml_collections.ConfigDict:
  config = ml_collections.ConfigDict()
  config.kind = kind                   # mulan | clip | siglip
  config.implementation = implementation  # gather | ring (sharded) | plain | chunked
  # Texts per block of logits: required for chunked; for ring optional
  # (B_local x chunk_size per device instead of B_local x B_local); 0: none.
  config.chunk_size = 0
  config.temperature_min = 1e-3        # optional clamp of the learned temperature
  config.temperature_max = 1.0
  config.initial_bias = -10.0          # siglip only
  # Pairs whose texts are identical are not negatives of each other.
  config.mask_duplicate_texts = False
  # Weight of the text similarity-distillation term: the text tower's pairwise
  # cosines in the batch kept near those of the sentence encoder it started
  # from (model.text_teacher), so it keeps its language. 0: off. It builds
  # two [B, B] cosine matrices of the global batch, whatever `implementation`.
  config.text_distill_weight = 0.0
  return config


def training(config: ml_collections.ConfigDict, *, num_train_steps: int,
             log_every: int = 50, checkpoint_every: int = 1000,
             eval_every: int = 1000) -> ml_collections.ConfigDict:
  """Loop settings shared by every experiment (set on `config` in place)."""
  config.seed = 0
  config.mesh = (("data", -1),)        # (axis, size); -1: all remaining devices
  config.param_rules = ()              # ((regex, partition spec), ...)
  config.compute_dtype = "float32"     # or "bfloat16" (parameters stay float32)
  config.num_train_steps = num_train_steps
  config.log_every = log_every
  config.checkpoint_every = checkpoint_every
  config.keep_checkpoints = 3
  config.eval_every = eval_every
  config.eval_batches = 4
  # Zero-shot, retrieval, probe and triplet evaluators run every `every`
  # steps: name -> {kind, every, **options} (jplaylist/evaluators/suite.py).
  config.evals = ml_collections.ConfigDict()
  config.max_nonfinite_steps = 10      # consecutive non-finite steps before stopping
  # A signal to any process stops every process after the same step; the
  # processes agree on it every this many steps (jplaylist/trainers/preemption.py).
  config.preemption_check_every = 1
  config.warm_start = ml_collections.ConfigDict(dict(
      text_bert="", audio_ast="", text_workdir="", audio_workdir=""))
  return config


def runlocal_training(config: ml_collections.ConfigDict) -> ml_collections.ConfigDict:
  """`runlocal`'s loop: 4 steps, every one logged, checkpoints at 2 and 4, one eval batch."""
  config.num_train_steps = 4
  config.log_every = 1
  config.checkpoint_every = 2
  config.eval_every = 4
  config.eval_batches = 1
  return config


def adversarial_embedding(form: str, arg: str | None) -> ml_collections.ConfigDict:
  """The self-supervised adversarial embedding (trainers/adversarial.py) of one form.

  Config arguments: metric (dssm: euclidean | cosine), prior (True: the
  adversarial phase; False: the metric phase alone, the ablation), positive
  (adjacent: the next window of the recording; rendition: the same stretch of
  another rendition of the composition), runlocal.
  """
  args = parse_arg(arg, runlocal="False", metric="euclidean", prior="True",
                   positive="adjacent")
  config = ml_collections.ConfigDict()
  config.trainer = "adversarial"
  config.input = input_pipeline(batch_size=32)
  config.input.window_seconds = 3.0    # each of the two adjacent windows
  config.model = ml_collections.ConfigDict(dict(
      audio_variant="tiny",            # M-ResNet variant of the embedder
      embed_dim=32,                    # the prior N(0, I)'s dimension
      num_mels=64, pooling="mean",
      head_hidden=64,                  # the adjacency classifier's hidden units
      discriminator_hidden=64, discriminator_layers=2))
  config.adversarial = ml_collections.ConfigDict(dict(
      form=form,                       # adjacency | dssm
      metric=args["metric"],           # dssm's similarity: euclidean | cosine
      scale=10.0,                      # dssm's gamma (see trainers/adversarial.py)
      prior=is_true(args["prior"]),    # the adversarial phase on or off
      positive=args["positive"],       # adjacent | rendition (trainers/adversarial.py)
      # Adam rate of the discriminator and of the embedder's fooling step;
      # the source: at the metric phase's rate the adversarial updates have
      # no effect. At 1e-2 (10x) the discriminator won and the embedder's
      # steps undid the metric phase (adjacency stayed at chance, 60 steps);
      # at 3e-3 both phases made progress (BENCHMARKS.md).
      learning_rate=3e-3))
  config.optimizer = optimizer(learning_rate=1e-3, warmup_steps=20, weight_decay=1e-4)
  training(config, num_train_steps=300, log_every=20, checkpoint_every=100,
           eval_every=100)
  config.eval_batches = 2
  if is_true(args["runlocal"]):
    config.input.batch_size = 8
    config.input.window_seconds = 1.0
    config.model.embed_dim = 8
    runlocal_training(config)
  return config
