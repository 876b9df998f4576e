"""Model runtime: loading, prompts, generation, adapters, training and evaluation.

Knows nothing of Slack or the database; `feedback` and `bot` build on it.
"""
