from services import FailWhaleError

__all__ = ["FailWhaleError"]
