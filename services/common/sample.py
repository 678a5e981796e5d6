"""Realistic sample accounts (Chinese text, emoji, Douyin-shaped ids), from a seed.

Used by the demo, the tests and the benchmarks. Ids are the platform's kind of ids: a
conversation is "0:1:<uidA>:<uidB>" of its two users, never anything made of a clock.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field

from google.protobuf.timestamp_pb2 import Timestamp

from imsync.v1 import entities_pb2 as e
from imsync.v1 import sync_pb2

_SURNAMES = "王李张刘陈杨黄赵吴周徐孙马朱胡郭何高林罗"
_GIVEN = ["小美", "阿强", "晓东", "丽丽", "子涵", "浩然", "欣怡", "俊杰", "雨桐", "梓萱", "一鸣", "思远"]
_OPENERS = ["你好", "在吗", "老板好", "亲", "请问一下", "您好呀", "哈喽"]
_QUESTIONS = [
    "这款还有货吗？",
    "什么时候发货呀",
    "可以便宜一点吗😂",
    "尺码偏大还是偏小？",
    "包邮吗🙏",
    "我的订单怎么还没到",
    "视频里那件外套在哪买的👀",
    "能开发票吗",
    "退换货怎么弄",
    "直播什么时候开始🔥",
]
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
_REPLIES = ["谢谢支持🙏", "链接在橱窗哦", "已私信您～", "下期安排！", "感谢喜欢❤️"]
_TITLES = [
    "秋冬穿搭分享",
    "开箱测评｜新款耳机",
    "一分钟学会拿铁拉花☕",
    "周末vlog🌿",
    "办公室好物推荐",
    "探店：巷子里的老面馆",
]


def _stamp(seconds: int) -> Timestamp:
    return Timestamp(seconds=seconds)


@dataclass
class SampleAccount:
    """One account's sample state; `grow()` adds what a live platform would."""

    account_id: str
    seed: int
    now: int  # unix seconds the newest item is close to
    account: e.Account = field(init=False)
    batch: sync_pb2.EntityBatch = field(init=False)
    _rng: random.Random = field(init=False)
    _next_id: int = field(init=False)

    def __post_init__(self) -> None:
        self._rng = random.Random(self.seed)
        self._next_id = 7_000_000_000_000_000_000 + self.seed * 1_000_000
        uid = str(90_000_000 + self.seed)
        self.account = e.Account(
            account_id=self.account_id,
            platform=e.PLATFORM_DOUYIN,
            user_id=uid,
            user_name=f"{self._rng.choice(['小店', '好物', '生活馆', '工作室'])}·{self._name()}",
            avatar=f"https://p3.douyinpic.example/avatar/{uid}.jpeg",
            signature="每天分享好物，私信必回💌",
            verified=self._rng.random() < 0.5,
            follower_count=self._rng.randint(1_000, 2_000_000),
            following_count=self._rng.randint(10, 500),
            status=e.ACCOUNT_STATUS_ACTIVE,
            login_state=e.LOGIN_STATE_LOGGED_IN,
            created_at=_stamp(self.now - 400 * 86_400),
            updated_at=_stamp(self.now),
        )
        self.batch = sync_pb2.EntityBatch()

    def _name(self) -> str:
        return self._rng.choice(_SURNAMES) + self._rng.choice(_GIVEN)

    def _id(self) -> str:
        self._next_id += self._rng.randint(1, 997)
        return str(self._next_id)

    def _customer(self) -> e.User:
        uid = str(self._rng.randint(10_000_000, 99_999_999))
        return e.User(user_id=uid, user_name=self._name(), avatar=f"https://p3.douyinpic.example/avatar/{uid}.jpeg")

    def _me(self) -> e.User:
        return e.User(user_id=self.account.user_id, user_name=self.account.user_name, avatar=self.account.avatar)

    def fill(
        self, *, conversations: int, messages_per_conversation: int, contents: int, comments_per_content: int
    ) -> None:
        span = 30 * 86_400
        for _ in range(conversations):
            self.add_conversation(self.now - self._rng.randint(3_600, span), messages_per_conversation)
        for _ in range(contents):
            content = self.add_content(self.now - self._rng.randint(86_400, span))
            for _ in range(comments_per_content):
                self.add_comment(content.content_id, content.publish_time.seconds + self._rng.randint(60, 86_400))

    def add_conversation(self, start: int, messages: int) -> e.Conversation:
        customer = self._customer()
        low, high = sorted((customer.user_id, self.account.user_id), key=int)
        conversation = self.batch.conversations.add(
            conversation_id=f"0:1:{low}:{high}",
            conversation_type=e.CONVERSATION_TYPE_ONE_ON_ONE,
            participant=customer,
            create_time=_stamp(start),
            platform=e.PLATFORM_DOUYIN,
            status=e.CONVERSATION_STATUS_ACTIVE,
        )
        at = start
        for index in range(messages):
            at += self._rng.randint(5, 1_800)
            self.add_message(conversation, at, inbound=index % 3 != 2)
        return conversation

    def add_message(self, conversation: e.Conversation, at: int, *, inbound: bool) -> e.Message:
        customer, me = conversation.participant, self._me()
        text = (
            f"{self._rng.choice(_OPENERS)}，{self._rng.choice(_QUESTIONS)}" if inbound else self._rng.choice(_REPLIES)
        )
        message = self.batch.messages.add(
            message_id=self._id(),
            conversation_id=conversation.conversation_id,
            sender=customer if inbound else me,
            receiver=me if inbound else customer,
            msg_type=e.MESSAGE_TYPE_TEXT,
            content=text,
            create_time=_stamp(at),
            status=e.MESSAGE_STATUS_DELIVERED if inbound else e.MESSAGE_STATUS_SENT,
            direction=e.DIRECTION_INBOUND if inbound else e.DIRECTION_OUTBOUND,
        )
        conversation.last_message.CopyFrom(
            e.MessagePreview(content=text, msg_type=e.MESSAGE_TYPE_TEXT, create_time=_stamp(at))
        )
        conversation.update_time.CopyFrom(_stamp(at))
        return message

    def add_content(self, at: int) -> e.Content:
        content_id = self._id()
        return self.batch.contents.add(
            content_id=content_id,
            content_type=e.CONTENT_TYPE_VIDEO,
            title=self._rng.choice(_TITLES),
            description="#好物分享 #日常",
            cover=f"https://p9.douyinpic.example/cover/{content_id}.jpeg",
            url=f"https://www.douyin.example/video/{content_id}",
            publish_time=_stamp(at),
            stats=e.ContentStats(
                likes=self._rng.randint(0, 50_000),
                shares=self._rng.randint(0, 2_000),
                views=self._rng.randint(1_000, 900_000),
            ),
        )

    def add_comment(self, content_id: str, at: int) -> e.Comment:
        comment = self.batch.comments.add(
            comment_id=self._id(),
            content_id=content_id,
            content=self._rng.choice(_COMMENTS),
            author=self._customer(),
            created_at=_stamp(at),
            like_count=self._rng.randint(0, 300),
            ip_label=self._rng.choice(["广东", "浙江", "北京", "四川", "上海"]),
        )
        if self._rng.random() < 0.3:
            self.batch.comments.add(
                comment_id=self._id(),
                content_id=content_id,
                parent_comment_id=comment.comment_id,
                content=self._rng.choice(_REPLIES),
                author=self._me(),
                created_at=_stamp(at + self._rng.randint(60, 7_200)),
            )
            comment.reply_count = 1
        for content in self.batch.contents:
            if content.content_id == content_id:
                content.stats.total_comments += 1
        return comment

    def add_reply(self, content_id: str, parent_comment_id: str, text: str, at: int) -> e.Comment:
        """The account's own reply under a comment."""
        return self.batch.comments.add(
            comment_id=self._id(),
            content_id=content_id,
            parent_comment_id=parent_comment_id,
            content=text,
            author=self._me(),
            created_at=_stamp(at),
        )

    def grow(self, at: int) -> None:
        """A new inbound message in a random conversation and, sometimes, a new comment."""
        if self.batch.conversations:
            self.add_message(self._rng.choice(self.batch.conversations), at, inbound=True)
        if self.batch.contents and self._rng.random() < 0.5:
            self.add_comment(self._rng.choice(self.batch.contents).content_id, at)


def sample_accounts(count: int, *, now: int, seed: int = 1, size: str = "small") -> list[SampleAccount]:
    """`count` accounts; "small" is a demo's worth, "bench" the benchmark's per-account size."""
    shapes = {
        "small": dict(conversations=12, messages_per_conversation=6, contents=6, comments_per_content=8),
        "bench": dict(conversations=200, messages_per_conversation=50, contents=50, comments_per_content=20),
    }
    accounts = []
    for index in range(count):
        account = SampleAccount(f"douyin-{index + 1:03d}", seed + index, now)
        account.fill(**shapes[size])
        accounts.append(account)
    return accounts
