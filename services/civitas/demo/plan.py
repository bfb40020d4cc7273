"""What every loader shares: the seed's figures, the district planned from one seed, and
the loader that calls an API with bounded concurrency."""

from __future__ import annotations

import asyncio
import random
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass, field
from typing import Any, Generic, TypeVar

import grpc

from civitas.chassis.client import open_channel

DISTRICT = ("QH", "秦淮区")
STREETS = [
    "大光路",
    "双塘",
    "红花",
    "光华路",
    "夫子庙",
    "秦虹",
    "中华门",
    "五老村",
    "洪武路",
    "瑞金路",
    "月牙湖",
    "朝天宫",
]
COMMUNITIES, GRIDS, SERVICE_CENTRES = 111, 686, 15
SURNAMES = (
    "王李张刘陈杨黄赵吴周徐孙马朱胡郭何高林罗郑梁谢宋唐许韩冯邓曹彭曾萧田董潘袁蔡蒋余于杜叶程"
)
GIVEN = "伟芳娜敏静丽强磊军洋勇艳杰娟涛明超秀霞平刚桂英华玉兰萍红建国文斌宁海燕鹏飞志慧"
PLACES = ["东", "西", "南", "北", "中", "新村", "花园", "苑", "里", "坊"]
S = TypeVar("S")


def spread(total: int, buckets: int) -> list[int]:
    """``total`` split over ``buckets`` as evenly as whole numbers allow."""
    return [total // buckets + (1 if i < total % buckets else 0) for i in range(buckets)]


def pick(rng: random.Random, weighted: list[tuple[Any, int]]) -> Any:
    """One of the weighted choices ``(value, weight)``."""
    return rng.choices([w[0] for w in weighted], weights=[w[1] for w in weighted])[0]


def phone(rng: random.Random) -> str:
    """A made-up mobile number."""
    return f"13{rng.randint(0, 9)}{rng.randint(10_000_000, 99_999_999)}"


@dataclass
class Plan:
    """Everything the demo creates, decided up front from one seed."""

    rng: random.Random
    streets: list[tuple[str, str, int]] = field(default_factory=list)  # code, name, centres
    communities: list[tuple[str, str]] = field(default_factory=list)
    grids: list[tuple[str, str, list[str]]] = field(default_factory=list)

    def person(self) -> str:
        """A made-up name."""
        return self.rng.choice(SURNAMES) + "".join(
            self.rng.choices(GIVEN, k=self.rng.randint(1, 2))
        )


def plan_district(seed: int = 2015) -> Plan:
    """The district's streets, communities and grids, and their addresses."""
    plan = Plan(random.Random(seed))
    centres = spread(SERVICE_CENTRES, len(STREETS))
    per_street = spread(COMMUNITIES, len(STREETS))
    per_community = spread(GRIDS, COMMUNITIES)
    community_index = 0
    for s, (name, n_communities) in enumerate(zip(STREETS, per_street, strict=True), start=1):
        street_code = f"QH-{s:02d}"
        plan.streets.append((street_code, f"{name}街道", centres[s - 1]))
        for c in range(1, n_communities + 1):
            code = f"{street_code}-{c:02d}"
            plan.communities.append((code, f"{name}{PLACES[c - 1]}社区"))
            for g in range(1, per_community[community_index] + 1):
                addresses = [f"{name}{PLACES[c - 1]}{g}区", f"{name}{c}{g:02d}号"]
                plan.grids.append((f"{code}-G{g:02d}", f"第{g}网格", addresses))
            community_index += 1
    return plan


def channel_to(address: str, token: str) -> grpc.aio.Channel:
    """The chassis' client channel, every call under ``token`` with 30 s to answer."""
    return open_channel(address, lambda: token, timeout_seconds=30)


async def missing(lookup: Awaitable[Any]) -> bool:
    """Whether ``lookup`` fails NOT_FOUND (any other failure is raised)."""
    try:
        await lookup
    except grpc.aio.AioRpcError as failed:
        if failed.code() is not grpc.StatusCode.NOT_FOUND:
            raise
        return True
    return False


class Loader(Generic[S]):
    """Calls the APIs with bounded concurrency and counts what it made."""

    def __init__(self, stub: S, concurrency: int = 24) -> None:
        self.stub = stub
        self.limit = asyncio.Semaphore(concurrency)
        self.done = 0

    async def each(
        self, label: str, items: Iterable[Any], call: Callable[[Any], Awaitable[Any]]
    ) -> list[Any]:
        """``call`` for each item, at most ``concurrency`` at a time; prints the count."""

        async def one(item: Any) -> Any:
            async with self.limit:
                result = await call(item)
                self.done += 1
                return result

        results = await asyncio.gather(*(one(i) for i in items))
        print(f"  {label:<34} {len(results):>6}", flush=True)
        return list(results)
