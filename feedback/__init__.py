"""The feedback store and the retraining loop: what analysts said, and what the model learns."""
