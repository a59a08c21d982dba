"""Reading: raw lines to events."""
