"""The differential oracle for sandload's promise that an accepted checkpoint is *only*
safetensors: the real loaders an accepted file could be handed to (``loaders``), and builders of
files aimed at the gaps between each loader and sandload's rules (``polyglots``).

Nothing here is part of the ``sandload`` package; the tests, the fuzz target and the campaign
(``python -m oracle campaign``) use it.
"""
