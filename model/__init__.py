"""Models, loss and metrics. Importing the package registers every architecture of model/."""
from model import dscnn, model  # noqa: F401
