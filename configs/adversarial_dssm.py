r"""Self-supervised embedding, DSSM form: a softmax over a reference's positive and negatives.

  python -m launch.prepare_data --dataset=demo          # build the corpus first
  python -m launch.train --config=configs/adversarial_dssm.py --workdir=workdirs/dssm
  python -m launch.train --config=configs/adversarial_dssm.py:metric=cosine \
      --workdir=workdirs/dssm_cosine                    # cosine instead of Euclidean
  python -m launch.train --config=configs/adversarial_dssm.py:prior=False \
      --workdir=workdirs/dssm_no_prior                  # the ablation without the prior
  python -m launch.train --config=configs/adversarial_dssm.py:positive=rendition \
      --workdir=workdirs/dssm_rendition                 # positives from another rendition
  python -m launch.evaluate --workdir=workdirs/dssm

Issue 14: one embedding network over a reference window, its adjacent window
(the positive) and the batch's windows of other compositions (negatives);
similarities Euclidean or cosine; an adversarial phase shaping the
embeddings to N(0, I) (jplaylist/trainers/adversarial.py). `runlocal` runs a
few steps on 1-s windows (tests).
"""

from configs import common


def get_config(arg: str | None = None):
  return common.adversarial_embedding("dssm", arg)
