"""The typed Python client of imsync: query RPCs (ImClient) and SyncData pushes (SyncClient)."""

from .query import ImClient
from .sync import SyncClient, SyncRefused, split_batch

__all__ = ["ImClient", "SyncClient", "SyncRefused", "split_batch"]
