"""BorgHUIConduit: the local web interface that holds the person's key."""

from .app import create_app
from .state import ConduitState

__all__ = ["ConduitState", "create_app"]
