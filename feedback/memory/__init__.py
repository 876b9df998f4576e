"""How team memory matches questions: by words (`matching`: terms, weights, the lexical confidence,
a small in-process index over the same measure) and by meaning (`semantic`: an embedding model's
calibration, the combined confidence the answering policy compares, the vector matrix)."""
