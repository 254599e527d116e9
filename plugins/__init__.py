"""Built-in plugins. Each module registers its components through the ``codec_register_*``
hooks, exactly as a third-party plugin would; ``registry.manager.BUILTIN_PLUGINS`` lists them."""
