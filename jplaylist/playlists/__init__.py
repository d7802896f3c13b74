"""Collaborative filtering over listening sequences and playlists.

`sequences`  where sequences come from: a playlist file (one per line) or the
             session simulator's listeners, extra tokens, train/test splits.
`item2vec`   skip-gram with negative sampling (word2vec) over track ids.
`als`        implicit-feedback matrix factorisation (Hu, Koren, Volinsky 2008).
`evaluate`   next-track hit rate and nDCG, warm and cold-start tables.
`pipeline`   the experiment `launch/item2vec.py` runs.
"""
