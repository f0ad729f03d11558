"""The model kinds, one module each; vae_cli/models.py is their registry. The options (config
classes) of all kinds are in options.py, which imports no torch."""
