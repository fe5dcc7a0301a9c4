"""The reproduce entries: one small module per experiment, each defining ``ENTRY``.

Helper modules shared by several entries start with ``_`` (they are not entries).
"""
