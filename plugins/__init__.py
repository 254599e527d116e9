"""Built-in plugins, one folder per kind (``transforms``, ``quantizers``, ``rates``, ``coders``).

Each module registers its components through the ``codec_register_*`` hooks, exactly as a
third-party plugin would; ``codec_lab.registry.manager.BUILTIN_PLUGINS`` lists the modules.
"""
