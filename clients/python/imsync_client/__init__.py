"""The typed Python client of imsync.

ImClient: one typed call per query RPC. Inbox: lists walked for you and events followed
for good. SyncClient: a SyncData stream driven step by step.
"""

from .friendly import EventsMissed, Inbox, walk
from .query import ImClient
from .sync import SyncClient, SyncRefused, split_batch

__all__ = ["EventsMissed", "ImClient", "Inbox", "SyncClient", "SyncRefused", "split_batch", "walk"]
