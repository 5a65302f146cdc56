"""Shared basics every stage uses: errors, atomic writes, checksums, device choice, the OpenCV guard,
image decoding, and the embeddings file (`.npz`) that hands embeddings from one stage to the next.

Nothing here imports another facever package.
"""
