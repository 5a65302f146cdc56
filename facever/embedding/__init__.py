"""Embedding extraction: load any supported face model, turn images into embeddings, fuse models.

- `models`: `load_embedding_model(spec)` for a facever `model.pt` or facenet-pytorch's InceptionResnetV1.
- `preprocess`: uint8 RGB crops -> the normalised NCHW tensor a model expects.
- `extract`: `embed_images(model, root, rel_paths, ...)`, the batched, overlapped extraction pipeline.
- `ensemble`: fuse several models' embeddings and evaluate each model and the ensemble on a protocol.

Submodules are imported on demand so that importing `facever.embedding` stays cheap.
"""
