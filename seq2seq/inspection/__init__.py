"""Looking inside a model or a run: parameter and FLOP accounting, attention maps,
learning-curve plots, and the commands that show them (info, attention, plot)."""
