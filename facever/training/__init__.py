"""Training face embedding models with Noisy Softmax (or plain softmax) on one device or many.

`config.TrainConfig` describes a run; `loop.train(config)` runs it (data, model, head, schedule,
AMP, checkpoints, validation, DDP). Importing this package imports nothing heavy; the modules import
torch themselves.
"""
