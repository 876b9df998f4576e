"""What enters the store: redaction of credentials, the identity guard, trust and review status."""
