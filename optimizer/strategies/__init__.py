"""The search strategies, one module (or, for a big one, one folder) each, apart from the engine."""
