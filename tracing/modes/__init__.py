"""Other modes: live, compare, the web page."""
