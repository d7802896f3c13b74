"""Mixing: highlight selection and DJ mixes (issue 15, items 4 and 5).

  highlights   frame energy, windowed highlight scores, the three start rules
  constructed  synthetic tracks with a known highlight, overlap evaluation
  transitions  tempo, key and embedding transition costs
  ordering     greedy nearest neighbour + 2-opt over an open path
  mix          beat-aligned cuts, equal-power crossfades, the mix and its report
  plots        the transitions figure
  sources      audio of a library index from a dataset or a folder
"""
