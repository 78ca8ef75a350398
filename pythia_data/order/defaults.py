"""The one home of Pythia's defaults: 143,000 iterations of a global batch of 1,024
sequences of 2,048 (+1) tokens, seed 1234. Imports nothing, so the CLI's help texts can
show them without loading numpy."""

#: Pythia's run: iterations, global batch (sequences), sequence length, seed.
PYTHIA_TRAIN_ITERS = 143000
PYTHIA_BATCH_SIZE = 1024
PYTHIA_SEQ_LENGTH = 2048
PYTHIA_SEED = 1234
