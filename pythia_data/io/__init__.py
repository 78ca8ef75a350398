"""The I/O layer: the one atomic-output protocol (:mod:`.atomic`) and the copy / hash
engines (:mod:`.copy`). Imports only ``errors`` and ``format``; this ``__init__`` imports
nothing so that ``pythia-data checksum`` loads no numpy."""
