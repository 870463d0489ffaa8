"""Data: text files and the built-in corpus for language models (text.py, corpus.py)."""
