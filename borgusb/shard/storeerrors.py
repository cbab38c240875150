"""The shard store's refusals: each has the reason a cell counts it by and the HTTP status it answers with."""

from __future__ import annotations


class StoreError(Exception):
    reason = "refused"
    status = 400

    def __init__(self, detail: str) -> None:
        super().__init__(detail)


class StoreFull(StoreError):
    reason = "quota"
    status = 507


class DiskFull(StoreError):
    """The disk under the store ran out of space (or its quota) before the quota did."""

    reason = "disk_full"
    status = 507


class Refused(StoreError):
    def __init__(self, reason: str, detail: str, status: int = 409) -> None:
        super().__init__(detail)
        self.reason = reason
        self.status = status


class Corrupt(StoreError):
    reason = "corrupt"
    status = 410
