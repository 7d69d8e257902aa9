"""Names shared across layers (inert: no I/O, no environment reads).

The pipeline pushes the model under ``MODEL_NAME``; the server serves it under
that name; monitoring labels its metrics and incidents with it. A flag may
name another model; this is the default every command uses.
"""

MODEL_NAME = "taxi"
