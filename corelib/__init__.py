"""codec-lab core: contracts, the composed Codec, training, evaluation and file formats.

``corelib`` imports nothing else of the project: plugins and the registry build on it.
"""

