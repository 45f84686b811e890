from logger.logger import setup_logging  # noqa: F401
from logger.visualization import TensorboardWriter  # noqa: F401
