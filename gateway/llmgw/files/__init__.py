"""The Files API (OpenAI's): files uploaded for batch jobs and the files batch jobs write.

Contents live on disk under DATA_DIR (shared by every gateway worker and replica and the batch
runner), metadata in Redis, both per organisation: another organisation's file id is simply
not found. `protocol` has the wire shapes, `upload` reads a multipart upload onto disk as it
arrives, `store` keeps files and their metadata.
"""
