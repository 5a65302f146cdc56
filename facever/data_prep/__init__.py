"""Data preparation: image decoding, protocol files, dataset formats and face alignment."""
