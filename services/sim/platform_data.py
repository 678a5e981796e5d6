"""The simulated platform's data: accounts with works, comments, replies, private
messages and notifications, from a seeded generator, changing over time (customers write,
like, follow, and delete their comments).

Shapes follow what the Douyin creator center's pages load (see shared IM-REFERENCE):
times in seconds for works, comments and notifications, milliseconds for private
messages, comment replies linked by `reply_id` ("0" for a top-level comment),
conversations "0:1:<uid>:<uid>". Whoever listens (`listen`) hears of every private message
as it is stored, as the platform's message push does.
"""

from __future__ import annotations

import copy
import itertools
import random
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

_SURNAMES = "王李张刘陈杨黄赵吴周徐孙马朱胡郭何高林罗"
_GIVEN = ["小美", "阿强", "晓东", "丽丽", "子涵", "浩然", "欣怡", "俊杰", "雨桐", "梓萱", "一鸣", "思远"]
_COMMENTS = [
    "太好看了吧😍",
    "求链接！",
    "第一次来，关注了❤️",
    "这个颜色绝了",
    "博主用的什么滤镜？",
    "已下单，期待收货📦",
    "笑死我了哈哈哈哈",
    "学到了👍",
    "背景音乐叫什么名字🎵",
    "下次可以出个教程吗",
]
_REPLIES = ["同问！", "我也想知道", "+1", "哈哈哈同感", "蹲一个回复"]
_MESSAGES = [
    "你好，这款还有货吗？",
    "什么时候发货呀",
    "可以便宜一点吗😂",
    "尺码偏大还是偏小？",
    "包邮吗🙏",
    "我的订单怎么还没到",
]
_NOTICES = {
    # The simulator's notice types: what each says, and whether it names a work.
    41: ("赞了你的作品", True),
    33: ("关注了你", False),
    45: ("在评论中@了你", True),
    1: ("系统通知：你的作品已通过审核", True),
}
_TITLES = [
    "秋冬穿搭分享",
    "开箱测评｜新款耳机",
    "一分钟学会拿铁拉花☕",
    "周末vlog🌿",
    "办公室好物推荐",
    "探店：巷子里的老面馆",
]


class Refused(Exception):
    """The platform refuses an action, with its status code and message."""

    def __init__(self, status_code: int, status_msg: str) -> None:
        super().__init__(status_msg)
        self.status_code = status_code
        self.status_msg = status_msg


# Status codes the simulated platform answers with.
OK = 0
NOT_LOGGED_IN = 8
TARGET_DELETED = 2100
PRIVATE_WORK = 2149

# Notice types (the `type` of an item of `notice_list_v2`).
NOTICE_LIKE = 41
NOTICE_FOLLOW = 33
NOTICE_MENTION = 45
NOTICE_SYSTEM = 1

# Hears (account uid, pushed frame) for every private message stored.
Listener = Callable[[str, dict[str, Any]], None]


def _user(uid: str, nickname: str) -> dict[str, Any]:
    return {"uid": uid, "nickname": nickname, "avatar_thumb": {"url_list": [f"/static/avatar.svg?u={uid}"]}}


@dataclass
class SimAccount:
    uid: str
    nickname: str
    works: list[dict[str, Any]] = field(default_factory=list)
    comments: dict[str, dict[str, Any]] = field(default_factory=dict)
    conversations: dict[str, dict[str, Any]] = field(default_factory=dict)
    messages: dict[str, dict[str, Any]] = field(default_factory=dict)
    notices: dict[str, dict[str, Any]] = field(default_factory=dict)
    # Comments deleted on the platform (a reply to them is refused).
    deleted: set[str] = field(default_factory=set)

    def profile(self) -> dict[str, Any]:
        return _user(self.uid, self.nickname) | {"signature": "每天分享好物，私信必回💌", "follower_count": 12_345}

    def work(self, item_id: str) -> dict[str, Any] | None:
        return next((w for w in self.works if w["item_id"] == item_id), None)


class Platform:
    """All simulated accounts; `tick()` makes customers write, as time passes."""

    def __init__(self, *, accounts: int = 3, seed: int = 1, now: int = 1_790_000_000) -> None:
        self._rng = random.Random(seed)
        self._ids = itertools.count(7_300_000_000_000_000_000 + seed * 1_000_000_000)
        self.now = now
        self.accounts: dict[str, SimAccount] = {}
        self._listeners: list[Listener] = []
        for index in range(accounts):
            uid = str(60_000_000 + seed * 1000 + index)
            account = SimAccount(uid, f"{self._rng.choice(['小店', '好物', '生活馆'])}·{self._name()}")
            self.accounts[uid] = account
            for _ in range(4):
                work = self._add_work(account, now - self._rng.randint(2 * 86_400, 20 * 86_400))
                for _ in range(self._rng.randint(2, 6)):
                    self._add_comment(account, work, work["create_time"] + self._rng.randint(60, 86_400))
            for _ in range(5):
                self._add_conversation(account, now - self._rng.randint(3_600, 10 * 86_400))
            for _ in range(6):
                self._add_notice(account, now - self._rng.randint(600, 5 * 86_400))

    def listen(self, listener: Listener) -> Callable[[], None]:
        """`listener` hears of every private message stored; call the result to stop."""
        self._listeners.append(listener)
        return lambda: self._listeners.remove(listener)

    # -------------------------------------------------------------- generation

    def _name(self) -> str:
        return self._rng.choice(_SURNAMES) + self._rng.choice(_GIVEN)

    def _id(self) -> str:
        return str(next(self._ids))

    def _customer(self) -> dict[str, Any]:
        return _user(str(self._rng.randint(10_000_000, 59_999_999)), self._name())

    def _add_work(self, account: SimAccount, at: int) -> dict[str, Any]:
        item_id = self._id()
        work = {
            "item_id": item_id,
            "aweme_id": item_id,
            "title": self._rng.choice(_TITLES),
            "cover_image_url": f"/static/cover.svg?i={item_id}",
            "create_time": at,
            "comment_count": 0,
            "media_type": 4,
            "duration": self._rng.randint(8_000, 90_000),
            "is_private": False,
        }
        account.works.insert(0, work)
        return work

    def _add_comment(
        self,
        account: SimAccount,
        work: dict[str, Any],
        at: int,
        *,
        parent: str = "0",
        author: dict[str, Any] | None = None,
        text: str | None = None,
    ) -> dict[str, Any]:
        cid = self._id()
        comment = {
            "cid": cid,
            "text": text if text is not None else self._rng.choice(_COMMENTS if parent == "0" else _REPLIES),
            "create_time": at,
            "aweme_id": work["item_id"],
            "reply_id": parent,
            "digg_count": self._rng.randint(0, 200),
            "reply_comment_total": 0,
            "user": author or self._customer(),
            "level": 1 if parent == "0" else 2,
            "image_list": None,
            "ip_label": self._rng.choice(["广东", "浙江", "北京", "四川", "上海"]),
        }
        account.comments[cid] = comment
        work["comment_count"] += 1
        if parent != "0":
            account.comments[parent]["reply_comment_total"] += 1
        return comment

    def _add_conversation(self, account: SimAccount, at: int) -> dict[str, Any]:
        customer = self._customer()
        low, high = sorted((customer["uid"], account.uid), key=int)
        conversation_id = f"0:1:{low}:{high}"
        conversation: dict[str, Any] = {
            "conversation_id": conversation_id,
            "participant": customer,
            "update_time": at * 1000,
        }
        account.conversations[conversation_id] = conversation
        for step in range(self._rng.randint(1, 4)):
            self._add_message(account, conversation, (at + step * 120) * 1000, own=step % 3 == 2)
        return conversation

    def _add_message(
        self, account: SimAccount, conversation: dict[str, Any], at_ms: int, *, own: bool, text: str | None = None
    ) -> dict[str, Any]:
        customer = conversation["participant"]
        message = {
            "server_id": self._id(),
            "conversation_id": conversation["conversation_id"],
            "sender": account.uid if own else customer["uid"],
            "is_self": own,
            "content": text if text is not None else self._rng.choice(_MESSAGES if not own else ["好的，稍等～"]),
            "create_time": at_ms,
            "msg_type": 7,
        }
        account.messages[message["server_id"]] = message
        conversation["update_time"] = at_ms
        conversation["last_message"] = {"content": message["content"], "create_time": at_ms, "msg_type": 7}
        if self._listeners:
            # As the message and its conversation are now: a frame is not changed later.
            frame = copy.deepcopy({"type": "new_message", "message": message, "conversation": conversation})
            for listener in list(self._listeners):
                listener(account.uid, frame)
        return message

    def _add_notice(self, account: SimAccount, at: int, kind: int | None = None) -> dict[str, Any]:
        kind = kind if kind is not None else self._rng.choice(list(_NOTICES))
        text, names_work = _NOTICES[kind]
        nid = self._id()
        notice = {
            "nid": nid,
            "type": kind,
            "create_time": at,
            "from_user": _user("0", "抖音小助手") if kind == NOTICE_SYSTEM else self._customer(),
            "aweme_id": self._rng.choice(account.works)["item_id"] if names_work and account.works else "",
            "content": text,
        }
        account.notices[nid] = notice
        return notice

    def delete_comment(self, account: SimAccount, cid: str) -> None:
        """A customer deletes a comment: it goes, with the replies under it."""
        comment = account.comments.pop(cid)
        account.deleted.add(cid)
        work = account.work(comment["aweme_id"])
        if work is not None:
            work["comment_count"] -= 1
        parent = account.comments.get(comment["reply_id"])
        if parent is not None:
            parent["reply_comment_total"] -= 1
        for reply in [c["cid"] for c in account.comments.values() if c["reply_id"] == cid]:
            self.delete_comment(account, reply)

    def tick(self, now: int) -> None:
        """Customers act: a new comment, a reply under one, a private message, a like or
        a follow, now and then a deleted comment or a new conversation, and the account
        now and then publishes a work."""
        self.now = now
        account = self._rng.choice(list(self.accounts.values()))
        roll = self._rng.random()
        tops = [c for c in account.comments.values() if c["reply_id"] == "0"]
        if roll < 0.33 and account.works:
            self._add_comment(account, self._rng.choice(account.works), now)
        elif roll < 0.5 and tops:
            parent = self._rng.choice(tops)
            work = account.work(parent["aweme_id"])
            assert work is not None
            self._add_comment(account, work, now, parent=parent["cid"])
        elif roll < 0.8 and account.conversations:
            self._add_message(account, self._rng.choice(list(account.conversations.values())), now * 1000, own=False)
        elif roll < 0.9:
            self._add_notice(account, now)
        elif roll < 0.94:
            theirs = [c["cid"] for c in account.comments.values() if c["user"]["uid"] != account.uid]
            if theirs:
                self.delete_comment(account, self._rng.choice(theirs))
        elif roll < 0.97:
            self._add_conversation(account, now - 3 * 120)  # its messages end by now
        else:
            self._add_work(account, now)

    def customer_writes(self, uid: str, kind: str, text: str, now: int, parent: str = "") -> dict[str, Any]:
        """A customer writes `text` to account `uid`: a private message in its latest
        conversation, a comment on its latest work, or a reply under comment `parent` (kind
        "message", "comment" or "reply")."""
        self.now = now
        account = self.accounts[uid]
        if kind == "message":
            conversation = max(account.conversations.values(), key=lambda c: c["update_time"])
            return self._add_message(account, conversation, now * 1000, own=False, text=text)
        if kind == "reply":
            top = account.comments[parent]
            work = account.work(top["aweme_id"])
            assert work is not None
            return self._add_comment(account, work, now, parent=parent, text=text)
        work = max(account.works, key=lambda w: w["create_time"])
        return self._add_comment(account, work, now, text=text)

    # ----------------------------------------------------------------- actions

    def reply(self, uid: str, item_id: str, reply_to: str, text: str, now: int) -> dict[str, Any]:
        account = self.accounts[uid]
        work = account.work(item_id)
        if work is None or reply_to in account.deleted or reply_to not in account.comments:
            raise Refused(TARGET_DELETED, "评论已删除")
        if work["is_private"]:
            raise Refused(PRIVATE_WORK, "作品已设为私密，无法回复")
        if not text.strip():
            raise Refused(2, "内容不能为空")
        return self._add_comment(account, work, now, parent=reply_to, author=_user(uid, account.nickname), text=text)

    def send(self, uid: str, conversation_id: str, text: str, now: int) -> dict[str, Any]:
        account = self.accounts[uid]
        conversation = account.conversations.get(conversation_id)
        if conversation is None:
            raise Refused(TARGET_DELETED, "会话不存在")
        if not text.strip():
            raise Refused(2, "内容不能为空")
        return self._add_message(account, conversation, now * 1000, own=True, text=text)

    def truth(self, uid: str) -> dict[str, Any]:
        account = self.accounts[uid]
        return {
            "account": account.profile(),
            "works": account.works,
            "comments": sorted(account.comments.values(), key=lambda c: c["cid"]),
            "conversations": list(account.conversations.values()),
            "messages": sorted(account.messages.values(), key=lambda m: m["server_id"]),
            "notices": sorted(account.notices.values(), key=lambda n: n["nid"]),
        }
