"""The model and its bundle: feature spec, validation, scoring, explanations, reference statistics,
and the fitted parts a bundle carries beside the model (calibrator, loss models, linear challenger)."""
