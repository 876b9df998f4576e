"""The Slack app: listeners, middleware, the assistant surfaces, answer delivery, the text
boundary, Block Kit views, admin commands, run reports, and the offline stand-in for Slack."""
