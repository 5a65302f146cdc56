"""The verification engine: pair scores, ROC metrics and the 10-fold protocol, as pure functions on arrays.

Modules:
- `scores`: cosine similarity / squared L2 distance of L2-normalised embeddings.
- `roc`: ROC curve from one cumulative-count core, AUC, EER, TAR@FAR.
- `tenfold`: threshold selection (exact midpoints or the facenet grid) and k-fold accuracy.
- `evaluate`: a `PairProtocol` + an `Embeddings` file -> `VerificationResult` (the report).
- `report`: report.json, roc.png and the console table.
"""
