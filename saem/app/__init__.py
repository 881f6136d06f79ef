"""The application layer: the ``Saem`` facade, prompt templates, the context builder, the chain."""
