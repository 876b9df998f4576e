"""Alembic environment and versions for the feedback store (run with `secbot db upgrade`)."""
