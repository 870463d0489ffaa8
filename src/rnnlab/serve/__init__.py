"""Suggestions as people type: an ASGI app (Starlette, run by uvicorn) with a typing page.

    from rnnlab.serve import create_app, load_models, Limits
    app = create_app(load_models(["runs/lstm-char"]), Limits(max_sessions=100))

``rnnlab serve RUN`` runs it; docs/serve.md describes the API, the limits and the page.
"""
from .app import create_app
from .models import LOADERS, ServedModel, load_models
from .sessions import Limits

__all__ = ["LOADERS", "Limits", "ServedModel", "create_app", "load_models"]
