"""The Douyin adapter: the creator center's pages in Chromium, read as a person's browser
reads them (`adapter.py` ties together the crawl, the login, the live chat and replies)."""

from .adapter import DouyinAdapter, DouyinOptions

__all__ = ["DouyinAdapter", "DouyinOptions"]
