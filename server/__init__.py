"""The Sanic demo server: one route per event-loop mechanism."""
