"""Speed measurements of the attacks, returned as figures (the `unsplit-tf benchmark` verb prints them).

`inversion` times the inversion attack's rounds, `labels` the label-inference
attacks against the authors' one-example loop, and `pytorch` restates the
authors' loops in PyTorch eager for comparison (only when torch is installed).
"""
