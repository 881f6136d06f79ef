"""Ingestion: load → clean → chunk → embed → catalogue (SQLite is the truth, FAISS a cache)."""
