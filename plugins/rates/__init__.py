"""Built-in rate strategies."""
