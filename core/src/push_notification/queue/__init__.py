"""Where accepted transactions wait for each driver instance: the contract (``contract.py``),
the in-memory queue and the durable SQLite queue (store, group commit, lanes, retry policy),
and the ``push-notification queue`` commands. Nothing here imports ``server/``."""

from push_notification.queue.contract import Outcome, Queue, QueueFull, QueueObserver
from push_notification.queue.memory import MemoryQueue

__all__ = ["MemoryQueue", "Outcome", "Queue", "QueueFull", "QueueObserver"]
