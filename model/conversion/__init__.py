"""Bringing a team's own ChatGLM into secbot, once: ChatGLM2-6B / ChatGLM3-6B checkpoints become
native `GlmForCausalLM` directories (`convert.py`), THUDM P-tuning checkpoints become PEFT prefix
adapters for them (`ptuning.py`). Nothing in a source directory is imported or executed: configs
are read as JSON, weights with `weights_only` loading or safetensors, the tokenizer as
SentencePiece data, and a checkpoint's own Python files, where they are read at all, as text.
"""
