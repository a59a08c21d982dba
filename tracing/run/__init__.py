"""Running: a target under a tracer, its scenario, its files."""
