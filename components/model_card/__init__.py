"""Model card per pushed model version, from ML Metadata, TFDV and TFMA.

Not a TFX component: it reads MLMD after the run (it needs the Pusher's
output), so the runner calls it, and ``python -m components.model_card``
does it for any pushed version.
"""

from components.model_card.card import build_card, render_html, render_markdown, write_card

__all__ = ["build_card", "render_html", "render_markdown", "write_card"]
