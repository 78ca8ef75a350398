"""The integrity layer: hash algorithms and file hashing (:mod:`.hashing`), manifests and
the known Pythia checksums (:mod:`.manifest`), verification of files (:mod:`.verify`).
No numpy: ``pythia-data checksum`` starts in a tenth of a second."""
