"""Rendering: records to what people and programs read."""
