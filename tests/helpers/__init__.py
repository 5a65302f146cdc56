"""Helpers shared by several test modules: data builders and brute-force references.

Test modules import from here (or use fixtures from tests/conftest.py), never from each other;
tests/test_layout.py checks it.

- `benchmark_data`: small benchmark datasets from the real ORL / BBT faces (LFW tree, .bin bytes, YTF frames).
- `repro_data`: CASIA / LFW / FGLFW / YTF layouts for the recipe, reproduce and compare tests.
- `tiny_models`: a tiny trained sphere20 and synthetic LFW-layout crops + pairs.txt; the forward by hand.
- `training`: the tiny training options and a learnable synthetic identity folder.
- `references`: brute-force threshold search and facenet's own k-fold loop, to check the engine against.
"""
