"""``civitas demo``: the seed's district, loaded through the services' public APIs.

Figures from the survey of Qinhuai district (2015): 12 streets (大光路, 双塘, 红花
and 光华路 among them) with 15 street-level citizen service centres, 111
communities, 686 community grid party branches, a few thousand party members,
organs' party organizations paired with communities (双结对). Names of people
are made up from a seeded generator, so every run loads the same district.
"""

from __future__ import annotations

import asyncio
import random
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any, Generic, TypeVar

import grpc

from civitas.chassis.client import open_channel
from civitas.party_orgs.v1 import party_orgs_pb2 as pb
from civitas.party_orgs.v1 import party_orgs_pb2_grpc as pb_grpc

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
ORGANS = [
    "区委办",
    "区政府办",
    "区财政局",
    "区民政局",
    "区教育局",
    "区卫健委",
    "区住建局",
    "区城管局",
    "区司法局",
    "区人社局",
    "区文旅局",
    "区市场监管局",
    "区应急管理局",
    "区生态环境局",
    "区商务局",
    "区发改委",
    "区统计局",
    "区审计局",
    "区退役军人事务局",
    "区医保局",
]
SURNAMES = (
    "王李张刘陈杨黄赵吴周徐孙马朱胡郭何高林罗郑梁谢宋唐许韩冯邓曹彭曾萧田董潘袁蔡蒋余于杜叶程"
)
GIVEN = "伟芳娜敏静丽强磊军洋勇艳杰娟涛明超秀霞平刚桂英华玉兰萍红建国文斌宁海燕鹏飞志慧"
PLACES = ["东", "西", "南", "北", "中", "新村", "花园", "苑", "里", "坊"]
K = pb.PartyOrgKind
S = TypeVar("S")


def spread(total: int, buckets: int) -> list[int]:
    """``total`` split over ``buckets`` as evenly as whole numbers allow."""
    return [total // buckets + (1 if i < total % buckets else 0) for i in range(buckets)]


@dataclass
class Plan:
    """Everything the demo creates, decided up front from one seed."""

    rng: random.Random
    streets: list[tuple[str, str, int]] = field(default_factory=list)  # code, name, centres
    communities: list[tuple[str, str]] = field(default_factory=list)
    grids: list[tuple[str, str, list[str]]] = field(default_factory=list)

    def person(self) -> str:
        return self.rng.choice(SURNAMES) + "".join(
            self.rng.choices(GIVEN, k=self.rng.randint(1, 2))
        )


def plan_district(seed: int = 2015) -> Plan:
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


class Loader(Generic[S]):
    """Calls the APIs with bounded concurrency and counts what it made."""

    def __init__(self, stub: S, concurrency: int = 24) -> None:
        self.stub = stub
        self.limit = asyncio.Semaphore(concurrency)
        self.done = 0

    async def each(
        self, label: str, items: Iterable[Any], call: Callable[[Any], Awaitable[Any]]
    ) -> list[Any]:
        async def one(item: Any) -> Any:
            async with self.limit:
                result = await call(item)
                self.done += 1
                return result

        results = await asyncio.gather(*(one(i) for i in items))
        print(f"  {label:<34} {len(results):>6}", flush=True)
        return list(results)


async def load_party_orgs(address: str, token: str, members: int = 3000) -> bool:
    """Load the district; False (and nothing changed) when it is loaded already."""
    channel = open_channel(address, lambda: token, timeout_seconds=30)
    stub = pb_grpc.PartyOrgsServiceStub(channel)
    try:
        await stub.GetAdminUnit(pb.GetAdminUnitRequest(code=DISTRICT[0]))
        return False
    except grpc.aio.AioRpcError as exc:
        if exc.code() is not grpc.StatusCode.NOT_FOUND:
            raise
    try:
        await _load(Loader(stub), plan_district(), members)
    finally:
        await channel.close(None)
    return True


async def _load(
    load: Loader[pb_grpc.PartyOrgsServiceAsyncStub], plan: Plan, member_count: int
) -> None:
    s, rng = load.stub, plan.rng
    population = spread(880_000, COMMUNITIES)  # 1,218 social organizations at 13.7 per 10,000
    await s.RegisterAdminUnit(
        pb.RegisterAdminUnitRequest(code=DISTRICT[0], name=DISTRICT[1], population=sum(population))
    )
    await load.each(
        "streets",
        plan.streets,
        lambda st: s.RegisterAdminUnit(pb.RegisterAdminUnitRequest(code=st[0], name=st[1])),
    )
    centres = [
        (code, f"{name}为民服务中心{'' if i == 0 else '(二)'}")
        for code, name, n in plan.streets
        for i in range(n)
    ]
    await load.each(
        "citizen service centres",
        centres,
        lambda c: s.OpenServiceCentre(pb.OpenServiceCentreRequest(street_code=c[0], name=c[1])),
    )
    await load.each(
        "communities",
        zip(plan.communities, population, strict=True),
        lambda cp: s.RegisterAdminUnit(
            pb.RegisterAdminUnitRequest(code=cp[0][0], name=cp[0][1], population=cp[1])
        ),
    )
    await load.each(
        "grids",
        plan.grids,
        lambda g: s.RegisterAdminUnit(
            pb.RegisterAdminUnitRequest(
                code=g[0], name=g[1], addresses=g[2], population=rng.randint(900, 1600)
            )
        ),
    )
    posts = [
        (g[0], post, duty, plan.person())
        for g in plan.grids
        for post, duty in [("网格长", "统筹网格内巡查与诉求收集"), ("网格员", "入户走访、信息采集")]
    ]
    await load.each(
        "grid posts",
        posts,
        lambda p: s.AssignGridPost(
            pb.AssignGridPostRequest(grid_code=p[0], post=p[1], duty=p[2], holder=p[3])
        ),
    )
    street_orgs = await load.each(
        "street working committees",
        plan.streets,
        lambda st: s.FoundPartyOrg(
            pb.FoundPartyOrgRequest(
                kind=K.PARTY_ORG_KIND_STREET_WORKING_COMMITTEE,
                name=f"{st[1]}大工委",
                unit_code=st[0],
            )
        ),
    )
    street_of = {st[0]: r.org.org_id for st, r in zip(plan.streets, street_orgs, strict=True)}
    community_orgs = await load.each(
        "community party committees",
        plan.communities,
        lambda c: s.FoundPartyOrg(
            pb.FoundPartyOrgRequest(
                kind=K.PARTY_ORG_KIND_COMMUNITY_COMMITTEE,
                name=f"{c[1]}大党委",
                unit_code=c[0],
                parent_id=street_of[c[0][:5]],
            )
        ),
    )
    community_of = {
        c[0]: r.org.org_id for c, r in zip(plan.communities, community_orgs, strict=True)
    }
    await load.each(
        "committee secretaries",
        community_of.values(),
        lambda org_id: s.SeatCommitteeMember(
            pb.SeatCommitteeMemberRequest(
                org_id=org_id,
                seat=pb.CommitteeSeat(role=pb.SEAT_ROLE_SECRETARY, holder=plan.person()),
            )
        ),
    )
    grid_orgs = await load.each(
        "grid party branches",
        plan.grids,
        lambda g: s.FoundPartyOrg(
            pb.FoundPartyOrgRequest(
                kind=K.PARTY_ORG_KIND_GRID_BRANCH,
                name=f"{g[1]}党支部",
                unit_code=g[0],
                parent_id=community_of[g[0][:8]],
            )
        ),
    )
    organs = await load.each(
        "organs' general branches",
        ORGANS,
        lambda o: s.FoundPartyOrg(
            pb.FoundPartyOrgRequest(
                kind=K.PARTY_ORG_KIND_ORGAN_GENERAL_BRANCH,
                name=f"{o}机关总支",
                unit_code=DISTRICT[0],
            )
        ),
    )
    branches = [r.org.org_id for r in grid_orgs]
    people = [
        (
            f"QH{n:06d}",
            plan.person(),
            branches[n % len(branches)],
            rng.random() < 0.4,
            rng.choice(ORGANS),
        )
        for n in range(member_count)
    ]
    admitted = await load.each(
        "party members",
        people,
        lambda p: s.AdmitMember(
            pb.AdmitMemberRequest(
                member_number=p[0],
                name=p[1],
                org_id=p[2],
                working=p[3],
                employer=p[4] if p[3] else "",
            )
        ),
    )
    community_of_grid = {r.org.org_id: g[0][:8] for g, r in zip(plan.grids, grid_orgs, strict=True)}
    reporting = [
        (r.member.member_id, community_of_grid[r.member.org_id])
        for r in admitted
        if r.member.working and rng.random() < 0.6
    ]
    await load.each(
        "working members reported (在职党员报到)",
        reporting,
        lambda m: s.ReportToCommunity(
            pb.ReportToCommunityRequest(member_id=m[0], community_code=m[1])
        ),
    )
    communities = list(community_of.values())
    pairs = [(organs[i % len(organs)].org.org_id, org_id) for i, org_id in enumerate(communities)]
    await load.each(
        "organ-community pairings (双结对)",
        pairs,
        lambda p: s.FormPairing(pb.FormPairingRequest(organ_org_id=p[0], community_org_id=p[1])),
    )


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


def pick(rng: random.Random, weighted: list[tuple[Any, int]]) -> Any:
    return rng.choices([w[0] for w in weighted], weights=[w[1] for w in weighted])[0]


def plan_requests(plan: Plan, count: int, now: datetime) -> list[Any]:
    """A year of residents' requests over the district's grids, about 95% resolved."""
    from civitas.cases.v1 import cases_pb2 as cpb

    rng = random.Random(6029)
    requests: list[Any] = []
    for _ in range(count):
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
            resident_phone=f"13{rng.randint(0, 9)}{rng.randint(10_000_000, 99_999_999)}",
        )
        request = cpb.ImportCaseRequest(
            intake=intake, category=category, source_id=f"demo-12345-{len(requests)}"
        )
        request.received_at.FromDatetime(received)
        if dispatched < now and (resolved or rng.random() < 0.7):
            request.grid_code = grid
            request.dispatched_at.FromDatetime(dispatched)
        if resolved and request.grid_code and handled < now:
            request.resolution = f"已处理：{description.split('、')[0]}问题已解决"
            request.resolved_at.FromDatetime(handled)
            followed = handled + timedelta(days=rng.uniform(0.5, 3))
            if followed < now:
                request.satisfaction = pick(rng, SATISFACTION)
                if request.satisfaction >= 3:
                    request.closed_at.FromDatetime(followed)
        requests.append(request)
    return requests


async def load_cases(address: str, token: str, count: int = REQUESTS) -> bool:
    """Import a year of requests; False (and nothing changed) when there are cases already."""
    from civitas.cases.v1 import cases_pb2 as cpb
    from civitas.cases.v1 import cases_pb2_grpc as cpb_grpc

    channel = open_channel(address, lambda: token, timeout_seconds=30)
    stub = cpb_grpc.CasesServiceStub(channel)
    try:
        existing = await stub.ListCases(cpb.ListCasesRequest(page_size=1))
        if existing.cases:
            return False
        requests = plan_requests(plan_district(), count, datetime.now(UTC))
        limit = asyncio.Semaphore(16)

        async def one(request: Any) -> Any:
            async with limit:
                return await stub.ImportCase(request)

        replies = await asyncio.gather(*(one(r) for r in requests))
        resolved = sum(
            r.case.status in (cpb.STATUS_RESOLVED, cpb.STATUS_FOLLOWED_UP, cpb.STATUS_CLOSED)
            for r in replies
        )
        print(f"  {'residents requests (a year)':<34} {len(replies):>6}")
        print(f"  {'of them resolved':<34} {resolved:>6}", flush=True)
    finally:
        await channel.close(None)
    return True


BRANDS = [
    ("BRAND_ELDERLY_DINING", "银发餐桌·午餐送餐"),
    ("BRAND_AFTER_SCHOOL", "放学来吧·课后看护"),
    ("BRAND_HOME_CARE", "居家无忧·上门照护"),
    ("BRAND_LEGAL_AID", "春风驿站·法律咨询"),
    ("BRAND_CULTURE_AND_SPORT", "活力社区·文体活动"),
]
SKILLS = ["烹饪", "辅导作业", "护理", "法律", "文艺", "维修", "心理疏导"]
PERSON_TIMES = 12_000  # the seed: person-times of service by party members, end of 2014


async def load_volunteers(address: str, token: str, members: int, activities: int) -> bool:
    """Every demo member as a volunteer, and a year of activities with verified hours."""
    from civitas.party_orgs.domain.members import member_id_for
    from civitas.volunteers.v1 import volunteers_pb2 as vpb
    from civitas.volunteers.v1 import volunteers_pb2_grpc as vpb_grpc

    plan, rng = plan_district(), random.Random(12_000)
    channel = open_channel(address, lambda: token, timeout_seconds=30)
    stub = vpb_grpc.VolunteersServiceStub(channel)
    load = Loader(stub, concurrency=16)
    try:
        people = [
            (member_id_for(f"QH{n:06d}"), plan.grids[n % len(plan.grids)][0][:8])
            for n in range(members)
        ]
        registered = await load.each(
            "member volunteers",
            people,
            lambda p: stub.RegisterVolunteer(
                vpb.RegisterVolunteerRequest(
                    member_id=p[0],
                    community_code=p[1],
                    skills=rng.sample(SKILLS, 2),
                    phone=f"13{rng.randint(0, 9)}{rng.randint(10_000_000, 99_999_999)}",
                )
            ),
        )
        by_community: dict[str, list[str]] = {}
        for reply in registered:
            volunteer = reply.volunteer
            by_community.setdefault(volunteer.community_code, []).append(volunteer.volunteer_id)
        # The plan is anchored at the start of today (UTC), not at this second: a second
        # run of the demo must plan the very same activities, or their source ids would
        # name other activities (any start rounded to the hour crossing an hour between
        # the two runs did that).
        now = datetime.now(UTC).replace(hour=0, minute=0, second=0, microsecond=0)
        per_activity = max(1, PERSON_TIMES // max(activities, 1))
        plans: list[Any] = []
        for _ in range(activities):
            community = rng.choice(sorted(by_community))
            brand, title = rng.choice(BRANDS)
            start = (now - timedelta(days=rng.uniform(2, 365))).replace(
                minute=0, second=0, microsecond=0
            )
            hours = rng.choice([2, 3, 4])
            crew = rng.sample(
                by_community[community], min(per_activity, len(by_community[community]))
            )
            spec = vpb.CreateActivityRequest(
                brand=vpb.Brand.Value(brand),
                title=title,
                organizer=f"{community}社区",
                community_code=community,
                capacity=len(crew) + 3,
            )
            spec.starts_at.FromDatetime(start)
            spec.ends_at.FromDatetime(start + timedelta(hours=hours))
            attendance = []
            for volunteer_id in crew:
                record = vpb.AttendanceRecord(
                    volunteer_id=volunteer_id, verified_tenths_of_hours=hours * 10
                )
                record.checked_in_at.FromDatetime(start)
                record.checked_out_at.FromDatetime(start + timedelta(hours=hours))
                attendance.append(record)
            plans.append(
                vpb.ImportActivityRequest(
                    activity=spec, attendance=attendance, source_id=f"demo-activity-{len(plans)}"
                )
            )
        imported = await load.each("activities (past year)", plans, stub.ImportActivity)
        person_times = sum(len(r.activity.roster) for r in imported)
        print(f"  {'person-times of verified service':<34} {person_times:>6}", flush=True)
    finally:
        await channel.close(None)
    return True


SUBSIDY_FEN = 665_500_000  # the seed: 6,655,000 yuan of party-work subsidy in 2014
PURPOSES = ["老年助餐补贴", "楼道照明维修", "社区文体活动器材", "困难家庭慰问", "议事会场地布置"]


async def load_funds(address: str, token: str, approver_token: str, expenditures: int) -> bool:
    """A year's money for every community: the 200,000-yuan special fund, the seed's
    party-work subsidy spread over the communities, and small expenditures requested,
    approved by someone else, reserved and disbursed. False (and nothing changed) when
    the first community's special fund exists already."""
    from civitas.funds.application import DISTRICT_BUDGET, special_fund_of
    from civitas.funds.v1 import funds_pb2 as fpb
    from civitas.funds.v1 import funds_pb2_grpc as fpb_grpc

    plan, rng = plan_district(), random.Random(200_000)
    year = datetime.now(UTC).year
    channel = open_channel(address, lambda: token, timeout_seconds=30)
    approving = open_channel(address, lambda: approver_token, timeout_seconds=30)
    stub, approver = fpb_grpc.FundsServiceStub(channel), fpb_grpc.FundsServiceStub(approving)
    load = Loader(stub, concurrency=8)
    communities = [code for code, _ in plan.communities]
    try:
        try:
            await stub.GetStatement(
                fpb.GetStatementRequest(account_id=special_fund_of(communities[0]))
            )
            return False
        except grpc.aio.AioRpcError as exc:
            if exc.code() is not grpc.StatusCode.NOT_FOUND:
                raise
        await load.each(
            f"community special funds ({year})",
            communities,
            lambda c: stub.AllocateYear(fpb.AllocateYearRequest(community_code=c, year=year)),
        )
        subsidy_funds = await load.each(
            "party-work subsidy funds",
            communities,
            lambda c: stub.OpenAccount(
                fpb.OpenAccountRequest(
                    kind=fpb.ACCOUNT_KIND_FUND,
                    owner_code=c,
                    key="subsidy",
                    name="党组织工作补助经费",
                )
            ),
        )
        shares = spread(SUBSIDY_FEN, len(communities))
        await load.each(
            "party-work subsidies paid",
            list(zip(subsidy_funds, shares, strict=True)),
            lambda fund_share: stub.Transfer(
                fpb.TransferRequest(
                    idempotency_key=f"demo-subsidy-{year}-{fund_share[0].account.owner_code}",
                    from_account=DISTRICT_BUDGET,
                    to_account=fund_share[0].account.account_id,
                    amount_fen=fund_share[1],
                    memo=f"{year}年社区党组织工作补助经费",
                )
            ),
        )
        payee = await stub.OpenAccount(
            fpb.OpenAccountRequest(
                kind=fpb.ACCOUNT_KIND_PAYEE, owner_code="QH", key="suppliers", name="社区服务供应商"
            )
        )

        async def spend(community: str) -> Any:
            requested = await stub.RequestExpenditure(
                fpb.RequestExpenditureRequest(
                    community_code=community,
                    payee_account=payee.account.account_id,
                    amount_fen=rng.randint(50, 2_000) * 100,
                    purpose=rng.choice(PURPOSES),
                    evidence="发票及验收单",
                )
            )
            spent = requested.expenditure.expenditure_id
            await approver.ApproveExpenditure(fpb.ApproveExpenditureRequest(expenditure_id=spent))
            await stub.ReserveExpenditure(fpb.ReserveExpenditureRequest(expenditure_id=spent))
            return await stub.DisburseExpenditure(
                fpb.DisburseExpenditureRequest(expenditure_id=spent)
            )

        await load.each(
            "expenditures disbursed",
            [rng.choice(communities) for _ in range(expenditures)],
            spend,
        )
        balance = await stub.GetTrialBalance(fpb.GetTrialBalanceRequest())
        print(f"  {'trial balance (fen, zero)':<34} {balance.total_fen:>6}", flush=True)
    finally:
        await channel.close(None)
        await approving.close(None)
    return True


SAGA_REQUESTS = [  # what is broken, what mends it, what it costs in yuan
    ("小区路灯损坏，夜间出行不便", "更换路灯灯具", 1_800),
    ("楼道扶手松动，老人上下楼危险", "加固楼道扶手", 950),
    ("社区活动室漏雨", "修补活动室屋面", 4_200),
]


async def load_case_funding(
    cases_address: str, funds_address: str, token: str, approver_token: str
) -> bool:
    """A request in each of the first three communities that needs money: the case is
    taken by its grid's handler and asks the community's special fund (the saga with
    funds); someone else approves, and funds pays. The cases have fixed import ids, so
    a second run finds them and finishes only what an interrupted run left; False
    when every request had its outcome already."""
    from civitas.cases.v1 import cases_pb2 as cpb
    from civitas.cases.v1 import cases_pb2_grpc as cpb_grpc
    from civitas.eventkit import natural_id
    from civitas.funds.v1 import funds_pb2 as fpb
    from civitas.funds.v1 import funds_pb2_grpc as fpb_grpc

    plan, now = plan_district(), datetime.now(UTC)
    grids = [
        next(g for g in plan.grids if g[0].startswith(f"{code}-"))
        for code, _ in plan.communities[: len(SAGA_REQUESTS)]
    ]
    cases_channel = open_channel(cases_address, lambda: token, timeout_seconds=30)
    approving = open_channel(funds_address, lambda: approver_token, timeout_seconds=30)
    cases, approver = cpb_grpc.CasesServiceStub(cases_channel), fpb_grpc.FundsServiceStub(approving)
    pending = cpb.FUNDING_STATUS_PENDING

    async def taken(n: int, grid: tuple[str, str, list[str]], problem: str) -> Any:
        """The case, dispatched to the grid and accepted by its handler, imported under a
        fixed source id. A second run finds it under the id cases derives from the source
        id (sending the import again would be another request under that source id: its
        times are today's, and cases refuses that)."""
        source_id = f"demo-saga-{n}"
        try:
            imported = natural_id("imported-case", source_id)
            return (await cases.GetCase(cpb.GetCaseRequest(case_id=str(imported)))).case
        except grpc.aio.AioRpcError as missing:
            if missing.code() is not grpc.StatusCode.NOT_FOUND:
                raise
        code, _, addresses = grid
        request = cpb.ImportCaseRequest(
            intake=cpb.RegisterCaseRequest(
                channel=cpb.CHANNEL_LIVELIHOOD_STATION,
                community_code=code[:8],
                address=f"{addresses[0]}1栋",
                description=problem,
                urgency=cpb.URGENCY_NORMAL,
                resident_name=plan.person(),
                resident_phone=f"139{plan.rng.randint(10_000_000, 99_999_999)}",
            ),
            category="公共设施",
            grid_code=code,
            source_id=source_id,
        )
        request.received_at.FromDatetime(now - timedelta(hours=2))
        request.dispatched_at.FromDatetime(now - timedelta(hours=1))
        return (await cases.ImportCase(request)).case

    async def approved(expenditure_id: str) -> None:
        """Give the approval the expenditure waits for, once funds has opened it from the
        case's request. Each approval comes from another person: the demo's requests are
        below the street's threshold and need one; one above it would wait for a street
        approver (a third person) and stay pending here."""
        for _ in range(300):
            try:
                got = await approver.GetExpenditure(
                    fpb.GetExpenditureRequest(expenditure_id=expenditure_id)
                )
                if got.expenditure.status != fpb.EXPENDITURE_STATUS_REQUESTED:
                    return  # approved, or refused by the saga: its outcome says which
                await approver.ApproveExpenditure(
                    fpb.ApproveExpenditureRequest(expenditure_id=expenditure_id)
                )
            except grpc.aio.AioRpcError as refused:
                if refused.code() is grpc.StatusCode.FAILED_PRECONDITION:
                    return  # decided meanwhile (the saga refused it): the outcome says
                if refused.code() is not grpc.StatusCode.NOT_FOUND:
                    raise
                await asyncio.sleep(0.1)  # not opened yet

    async def outcome(case_id: str) -> int:
        for _ in range(300):  # cases learns it from funds' events
            got = await cases.GetCase(cpb.GetCaseRequest(case_id=case_id))
            if got.case.funding[0].status != pending:
                break
            await asyncio.sleep(0.1)
        return int(got.case.funding[0].status)

    try:
        found = [
            await taken(n, grid, problem)
            for n, (grid, (problem, _, _)) in enumerate(zip(grids, SAGA_REQUESTS, strict=True))
        ]
        if all(c.funding and c.funding[0].status != pending for c in found):
            return False
        for case, (_, fix, yuan) in zip(found, SAGA_REQUESTS, strict=True):
            funding = (
                case.funding
                or (
                    await cases.RequestFunds(
                        cpb.RequestFundsRequest(
                            case_id=case.case_id,
                            amount_fen=yuan * 100,
                            payee_account="payee:QH:suppliers",
                            purpose=fix,
                            evidence="维修报价单",
                        )
                    )
                ).case.funding
            )
            await approved(funding[0].expenditure_id)
        outcomes = [await outcome(case.case_id) for case in found]
        for label, status in [
            ("requests for money asked by cases", None),
            ("of them paid by the fund", cpb.FUNDING_STATUS_GRANTED),
            ("of them refused", cpb.FUNDING_STATUS_REFUSED),
            ("of them still waiting", pending),
        ]:
            count = len(outcomes) if status is None else outcomes.count(status)
            if count or status in (None, cpb.FUNDING_STATUS_GRANTED):
                print(f"  {label:<34} {count:>6}", flush=True)
    finally:
        await cases_channel.close(None)
        await approving.close(None)
    return True
