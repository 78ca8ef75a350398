"""The format layer: the MMIDIDX header and index (:mod:`.mmidx`), the one shard-name
grammar and shard-set discovery (:mod:`.shardset`), ``.npy`` headers (:mod:`.npy`).

Imports only :mod:`pythia_data.errors`. This ``__init__`` imports nothing, so that
``shardset`` can be used without loading numpy (``pythia-data checksum`` starts fast).
"""
