"""Storm control: a user's transactions for one instance merged into fewer deliveries.

``coalesce`` merges what arrives within a short window; ``defer_non_new`` holds flag changes,
expunges and mailbox operations up to a longer one, until new mail flushes them. Held
transactions live in a store beside the queue, so a restart loses none of them.
"""

from push_notification.storm.merge import merge
from push_notification.storm.settings import StormSettings, read_storm_settings
from push_notification.storm.store import SqliteStormStore, StormStore
from push_notification.storm.windows import StormQueue

__all__ = ["SqliteStormStore", "StormQueue", "StormSettings", "StormStore", "merge", "read_storm_settings"]
