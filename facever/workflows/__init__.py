"""Whole paths built from the stages: `demo` (synthetic end-to-end run), `reproduce` (the paper's table),
`compare` (training runs side by side).
"""
