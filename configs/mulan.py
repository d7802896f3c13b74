r"""The patent's MuLan training: M-ResNet-50 or M-AST with a BERT-base text tower.

  python -m launch.train --config=configs/mulan.py:audio=resnet50 --workdir=/tmp/mulan
  python -m launch.train --config=configs/mulan.py:audio=ast --workdir=/tmp/mulan_ast
  python -m launch.train --config=configs/mulan.py:audio=resnet50,runlocal=True --workdir=/tmp/m

Settings from the patent: d = 128, Adam with decoupled weight decay, initial
learning rate 5e-5 (M-ResNet-50) or 4e-5 (M-AST) decayed x0.9 every 40K
steps, global batch 6144 (M-ResNet-50) or 5120 (M-AST), text sources mixed
SF:LF:PL:ASET = 2:2:1:1, one random 10-s window per recording. `runlocal`
shrinks everything so a run finishes in seconds on a CPU.

M-AST reads the "ast_kaldi" front-end (jplaylist/audio/kaldi.py): the
normalised Kaldi fbanks at 10-ms frames, 1024 per window, that AudioSet AST
checkpoints were trained on, so `warm_start.audio_ast` imports them with their
own 12 x 101 position grid. Runs made with the earlier Slaney-dB front-end
resume with `--config.model.frontend=ast`.
"""

from configs import common


def get_config(arg: str | None = None):
  args = common.parse_arg(arg, audio="resnet50", runlocal="False")
  audio = args["audio"]
  if audio not in ("resnet50", "ast"):
    raise ValueError(f"audio must be resnet50 or ast, got {audio!r}")
  runlocal = common.is_true(args["runlocal"])
  config = common.ml_collections.ConfigDict()
  is_ast = audio == "ast"
  config.input = common.input_pipeline(batch_size=5120 if is_ast else 6144)
  config.model = common.model(audio_tower="ast" if is_ast else "resnet",
                              audio_variant="base" if is_ast else "50",
                              text_variant="base")
  config.loss = common.loss(kind="mulan", implementation="gather")
  config.optimizer = common.optimizer(learning_rate=4e-5 if is_ast else 5e-5)
  common.training(config, num_train_steps=1_000_000, log_every=100,
                  checkpoint_every=2000, eval_every=10_000)
  config.warm_start.audio_ast = ""      # e.g. a Hugging Face AudioSet AST folder
  if runlocal:
    config.input.batch_size = 8
    config.input.max_text_length = 16
    config.model.audio_variant = "tiny"
    config.model.text_variant = "tiny"
    common.runlocal_training(config)
  return config
