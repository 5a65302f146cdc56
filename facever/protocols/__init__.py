"""Benchmark protocols: the `PairProtocol` type and a reader per benchmark file (LFW, FGLFW/CALFW/CPLFW,
YouTube Faces, InsightFace `.bin`), plus pair-list generation. Readers never import model code.
"""
