"""Understanding: events against the model, to records with verdicts."""
