"""Built-in encoders and decoders (analysis and synthesis transforms)."""
