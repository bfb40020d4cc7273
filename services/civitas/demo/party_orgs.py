"""The district into party_orgs: units, grid posts, the organization tree, members,
working members reporting to communities, and organs paired with communities."""

from __future__ import annotations

from typing import Any, TypeAlias

from civitas.demo.plan import (
    COMMUNITIES,
    DISTRICT,
    Loader,
    Plan,
    channel_to,
    missing,
    plan_district,
    spread,
)
from civitas.eventkit import natural_id
from civitas.party_orgs.v1 import party_orgs_pb2 as pb
from civitas.party_orgs.v1 import party_orgs_pb2_grpc as pb_grpc

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
K = pb.PartyOrgKind
Stub: TypeAlias = "pb_grpc.PartyOrgsServiceAsyncStub"


def member_number(n: int) -> str:
    """The number on the ``n``-th demo member's record."""
    return f"QH{n:06d}"


def member_id_of(number: str) -> str:
    """A member's id by party_orgs' published rule: it derives from the member number
    (``natural_id("member", number)``), so other loaders need not ask party_orgs."""
    return str(natural_id("member", number))


async def load_party_orgs(address: str, token: str, members: int = 3000) -> bool:
    """Load the district; False (and nothing changed) when it is loaded already."""
    channel = channel_to(address, token)
    stub = pb_grpc.PartyOrgsServiceStub(channel)
    try:
        if not await missing(stub.GetAdminUnit(pb.GetAdminUnitRequest(code=DISTRICT[0]))):
            return False
        load, plan = Loader(stub), plan_district()
        await _units(load, plan)
        community_of, grid_orgs = await _organizations(load, plan)
        organs = await _organs(load)
        admitted = await _members(load, plan, [r.org.org_id for r in grid_orgs], members)
        await _reporting(load, plan, grid_orgs, admitted)
        await _pairings(load, organs, list(community_of.values()))
    finally:
        await channel.close(None)
    return True


async def _units(load: Loader[Stub], plan: Plan) -> None:
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
    await _grid_posts(load, plan)


async def _grid_posts(load: Loader[Stub], plan: Plan) -> None:
    posts = [
        (g[0], post, duty, plan.person())
        for g in plan.grids
        for post, duty in [("网格长", "统筹网格内巡查与诉求收集"), ("网格员", "入户走访、信息采集")]
    ]
    await load.each(
        "grid posts",
        posts,
        lambda p: load.stub.AssignGridPost(
            pb.AssignGridPostRequest(grid_code=p[0], post=p[1], duty=p[2], holder=p[3])
        ),
    )


def _founding(
    kind: pb.PartyOrgKind.ValueType, name: str, unit_code: str, parent_id: str = ""
) -> pb.FoundPartyOrgRequest:
    return pb.FoundPartyOrgRequest(kind=kind, name=name, unit_code=unit_code, parent_id=parent_id)


async def _organizations(load: Loader[Stub], plan: Plan) -> tuple[dict[str, str], list[Any]]:
    """Street working committees, community committees with their secretaries, and grid
    branches: the communities' org ids by unit code, and the grid branches as founded."""
    s = load.stub
    street_orgs = await load.each(
        "street working committees",
        plan.streets,
        lambda st: s.FoundPartyOrg(
            _founding(K.PARTY_ORG_KIND_STREET_WORKING_COMMITTEE, f"{st[1]}大工委", st[0])
        ),
    )
    street_of = {st[0]: r.org.org_id for st, r in zip(plan.streets, street_orgs, strict=True)}
    community_orgs = await load.each(
        "community party committees",
        plan.communities,
        lambda c: s.FoundPartyOrg(
            _founding(
                K.PARTY_ORG_KIND_COMMUNITY_COMMITTEE, f"{c[1]}大党委", c[0], street_of[c[0][:5]]
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
            _founding(K.PARTY_ORG_KIND_GRID_BRANCH, f"{g[1]}党支部", g[0], community_of[g[0][:8]])
        ),
    )
    return community_of, grid_orgs


async def _organs(load: Loader[Stub]) -> list[str]:
    """The organs' general branches: their org ids."""
    organs = await load.each(
        "organs' general branches",
        ORGANS,
        lambda o: load.stub.FoundPartyOrg(
            _founding(K.PARTY_ORG_KIND_ORGAN_GENERAL_BRANCH, f"{o}机关总支", DISTRICT[0])
        ),
    )
    return [r.org.org_id for r in organs]


async def _members(load: Loader[Stub], plan: Plan, branches: list[str], count: int) -> list[Any]:
    """Members admitted round the grid branches, 40% of them working (with an employer)."""
    rng = plan.rng
    people = [
        (
            member_number(n),
            plan.person(),
            branches[n % len(branches)],
            rng.random() < 0.4,
            rng.choice(ORGANS),
        )
        for n in range(count)
    ]
    return await load.each(
        "party members",
        people,
        lambda p: load.stub.AdmitMember(
            pb.AdmitMemberRequest(
                member_number=p[0],
                name=p[1],
                org_id=p[2],
                working=p[3],
                employer=p[4] if p[3] else "",
            )
        ),
    )


async def _reporting(
    load: Loader[Stub], plan: Plan, grid_orgs: list[Any], admitted: list[Any]
) -> None:
    """60% of working members report to the community of their branch's grid."""
    community_of_grid = {r.org.org_id: g[0][:8] for g, r in zip(plan.grids, grid_orgs, strict=True)}
    reporting = [
        (r.member.member_id, community_of_grid[r.member.org_id])
        for r in admitted
        if r.member.working and plan.rng.random() < 0.6
    ]
    await load.each(
        "working members reported (在职党员报到)",
        reporting,
        lambda m: load.stub.ReportToCommunity(
            pb.ReportToCommunityRequest(member_id=m[0], community_code=m[1])
        ),
    )


async def _pairings(load: Loader[Stub], organs: list[str], communities: list[str]) -> None:
    pairs = [(organs[i % len(organs)], org_id) for i, org_id in enumerate(communities)]
    await load.each(
        "organ-community pairings (双结对)",
        pairs,
        lambda p: load.stub.FormPairing(
            pb.FormPairingRequest(organ_org_id=p[0], community_org_id=p[1])
        ),
    )
