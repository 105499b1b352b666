"""The bad-input suite: third-party corpora thrown at the real ingestion and the real gateway.

``corpora`` loads and samples the corpora, ``checks`` holds what "handled" means for one input,
``channels`` drives each channel against running services, ``run`` is ``make badinput``.
"""
