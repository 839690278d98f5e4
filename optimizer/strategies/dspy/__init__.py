"""The DSPy bridge: DSPy's optimizers searching for the system prompt on promptopt's task, models, cache and
budget (`bridge` runs them; `optimizers` declares each; `program` is the DSPy side, imported only once one runs)."""
