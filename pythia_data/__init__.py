"""pythia-data: the exact token data EleutherAI's Pythia models were trained on."""

from pythia_data.errors import PythiaDataError

__version__ = "0.1.0"
__all__ = ["PythiaDataError", "__version__"]
