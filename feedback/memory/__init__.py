"""How team memory matches questions: terms, weights, the confidence that the answering policy
compares, and a small in-process index over the same measure."""
