"""The `seqtune serve` server: a FastAPI app (app.py) whose one worker thread owns the model and
decodes concurrent requests together (batcher.py), plus the page for chemists (page/)."""

from seqtune.inference.server.app import Limits, create_app

__all__ = ["Limits", "create_app"]
