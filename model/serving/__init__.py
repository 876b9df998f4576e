"""Serving a model over HTTP: the OpenAI-compatible routes, the chat service, continuous
batching, the wire protocol, metrics, and the clients the other layers ask a model through."""
