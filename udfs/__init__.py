"""User-defined functions the PyFlink jobs ship to their Python workers."""
