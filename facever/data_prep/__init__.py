"""Preparing data before a model sees it: face alignment, downloads, and training-set formats.

- `templates`, `similarity`, `align`, `align_dataset`: 5-point alignment (MTCNN + similarity warp) and the
  resumable dataset run behind `facever align`.
- `fetch`: resumable, checksum-verified downloads with safe archive extraction.
- `identity_folder`, `recordio`, `synthetic_faces`: training sets (identity folders, InsightFace RecordIO,
  generated cartoon identities).
"""
