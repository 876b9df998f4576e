"""Credentials out of text before anything is stored (`Redactor`); see `redactor` for the layers."""

from secbot.feedback.intake.redaction.redactor import Redacted, Redactor

__all__ = ["Redacted", "Redactor"]
