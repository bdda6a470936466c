"""Evaluation of a model on a labelled set of videos (clip, multi-view and streamed protocols):
`cozoo.evaluation.evaluate` loads the model, runs the protocol and writes the metrics and plots."""
