"""Evaluating summaries against references: ROUGE, sentence-embedding similarity, BERTScore."""
