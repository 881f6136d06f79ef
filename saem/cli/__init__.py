"""Command-line interface (``saem``). Built on typer and rich."""
