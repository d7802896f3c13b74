r"""Self-supervised embedding, adjacency form: a Siamese classifier of adjacent passages.

  python -m launch.prepare_data --dataset=demo          # build the corpus first
  python -m launch.train --config=configs/adversarial_adjacency.py --workdir=workdirs/adjacency
  python -m launch.train --config=configs/adversarial_adjacency.py:prior=False \
      --workdir=workdirs/adjacency_no_prior             # the ablation without the prior
  python -m launch.train --config=configs/adversarial_adjacency.py:positive=rendition \
      --workdir=workdirs/adjacency_rendition            # positives from another rendition
  python -m launch.evaluate --workdir=workdirs/adjacency

Issue 14: two adjacent 3-s windows of a recording against windows of another
composition, a small classifier on the two embeddings' concatenation, and an
adversarial phase shaping the embeddings to N(0, I)
(jplaylist/trainers/adversarial.py). The source finds this form the more
stable of the two. `runlocal` runs a few steps on 1-s windows (tests).
"""

from configs import common


def get_config(arg: str | None = None):
  return common.adversarial_embedding("adjacency", arg)
