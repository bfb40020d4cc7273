"""A year of residents' requests into cases, imported as the 12345 hotline's records."""

from __future__ import annotations

import random
from datetime import UTC, datetime, timedelta

from civitas.cases.v1 import cases_pb2 as cpb
from civitas.cases.v1 import cases_pb2_grpc as cpb_grpc
from civitas.demo.plan import Loader, Plan, channel_to, phone, pick, plan_district

CHANNELS = [
    ("CHANNEL_HOTLINE_12345", 40),
    ("CHANNEL_LIVELIHOOD_STATION", 25),
    ("CHANNEL_SERVICE_CENTRE_WINDOW", 15),
    ("CHANNEL_GRID_PATROL", 15),
    ("CHANNEL_ONLINE", 5),
]
CATEGORIES = [
    ("环境卫生", "楼道堆放杂物、垃圾清运不及时"),
    ("物业管理", "小区电梯故障、物业不作为"),
    ("邻里纠纷", "楼上漏水、噪音引发的邻里矛盾"),
    ("公共设施", "路灯不亮、井盖破损"),
    ("养老服务", "独居老人需要助餐、上门照护"),
    ("违章搭建", "楼顶违建、占用公共通道"),
    ("停车管理", "小区停车位紧张、乱停车"),
    ("噪音扰民", "夜间商户噪音扰民"),
    ("政策咨询", "医保、低保、居住证办理咨询"),
    ("治安隐患", "单元门禁损坏、可疑人员"),
]
URGENCIES = [("URGENCY_URGENT", 5), ("URGENCY_NORMAL", 70), ("URGENCY_LOW", 25)]
SATISFACTION = [(5, 55), (4, 30), (3, 9), (2, 4), (1, 2)]
REQUESTS, RESOLVED_SHARE = 6029, 5760 / 6029  # the seed's livelihood stations
RESOLVED_OR_AFTER = (cpb.STATUS_RESOLVED, cpb.STATUS_FOLLOWED_UP, cpb.STATUS_CLOSED)


def plan_requests(plan: Plan, count: int, now: datetime) -> list[cpb.ImportCaseRequest]:
    """A year of residents' requests over the district's grids, about 95% resolved."""
    rng = random.Random(6029)
    return [_request(rng, plan, now, f"demo-12345-{n}") for n in range(count)]


def _request(
    rng: random.Random, plan: Plan, now: datetime, source_id: str
) -> cpb.ImportCaseRequest:
    grid, _, addresses = rng.choice(plan.grids)
    received = now - timedelta(days=rng.uniform(0, 365))
    category, description = rng.choice(CATEGORIES)
    resolved = rng.random() < RESOLVED_SHARE
    dispatched = received + timedelta(minutes=rng.uniform(10, 150))
    handled = dispatched + timedelta(hours=rng.lognormvariate(3.3, 1.0))
    intake = cpb.RegisterCaseRequest(
        channel=cpb.Channel.Value(pick(rng, CHANNELS)),
        community_code=grid[:8],
        address=f"{rng.choice(addresses)}{rng.randint(1, 30)}栋",
        description=description,
        urgency=cpb.Urgency.Value(pick(rng, URGENCIES)),
        resident_name=plan.person(),
        resident_phone=phone(rng),
    )
    request = cpb.ImportCaseRequest(intake=intake, category=category, source_id=source_id)
    request.received_at.FromDatetime(received)
    if dispatched < now and (resolved or rng.random() < 0.7):
        request.grid_code = grid
        request.dispatched_at.FromDatetime(dispatched)
    if resolved and request.grid_code and handled < now:
        _resolve(rng, request, f"已处理：{description.split('、')[0]}问题已解决", handled, now)
    return request


def _resolve(
    rng: random.Random, request: cpb.ImportCaseRequest, how: str, handled: datetime, now: datetime
) -> None:
    """Resolved when ``handled``; followed up and, when satisfied, closed before now."""
    request.resolution = how
    request.resolved_at.FromDatetime(handled)
    followed = handled + timedelta(days=rng.uniform(0.5, 3))
    if followed < now:
        request.satisfaction = pick(rng, SATISFACTION)
        if request.satisfaction >= 3:
            request.closed_at.FromDatetime(followed)


async def load_cases(address: str, token: str, count: int = REQUESTS) -> bool:
    """Import a year of requests; False (and nothing changed) when there are cases already."""
    channel = channel_to(address, token)
    stub = cpb_grpc.CasesServiceStub(channel)
    try:
        existing = await stub.ListCases(cpb.ListCasesRequest(page_size=1))
        if existing.cases:
            return False
        requests = plan_requests(plan_district(), count, datetime.now(UTC))
        load = Loader(stub, concurrency=16)
        replies = await load.each("residents requests (a year)", requests, stub.ImportCase)
        resolved = sum(r.case.status in RESOLVED_OR_AFTER for r in replies)
        print(f"  {'of them resolved':<34} {resolved:>6}", flush=True)
    finally:
        await channel.close(None)
    return True
