"""Errors a user can meet in the feedback store, each saying what was wrong."""

from __future__ import annotations

from secbot.model.errors import ModelError


class StoreError(ModelError):
    """A store operation that cannot be done as asked; the message says why."""
