"""Every demo member as a volunteer, and a year of activities with verified hours."""

from __future__ import annotations

import random
from datetime import UTC, datetime, timedelta
from typing import TypeAlias

from civitas.demo.party_orgs import member_id_of, member_number
from civitas.demo.plan import Loader, channel_to, phone, plan_district
from civitas.volunteers.v1 import volunteers_pb2 as vpb
from civitas.volunteers.v1 import volunteers_pb2_grpc as vpb_grpc

BRANDS = [
    ("BRAND_ELDERLY_DINING", "银发餐桌·午餐送餐"),
    ("BRAND_AFTER_SCHOOL", "放学来吧·课后看护"),
    ("BRAND_HOME_CARE", "居家无忧·上门照护"),
    ("BRAND_LEGAL_AID", "春风驿站·法律咨询"),
    ("BRAND_CULTURE_AND_SPORT", "活力社区·文体活动"),
]
SKILLS = ["烹饪", "辅导作业", "护理", "法律", "文艺", "维修", "心理疏导"]
PERSON_TIMES = 12_000  # the seed: person-times of service by party members, end of 2014
Stub: TypeAlias = "vpb_grpc.VolunteersServiceAsyncStub"


async def load_volunteers(address: str, token: str, members: int, activities: int) -> bool:
    """Every demo member as a volunteer, and a year of activities with verified hours."""
    rng = random.Random(12_000)
    channel = channel_to(address, token)
    load = Loader(vpb_grpc.VolunteersServiceStub(channel), concurrency=16)
    try:
        by_community = await _volunteers(load, rng, members)
        plans = _activities(rng, by_community, activities)
        imported = await load.each("activities (past year)", plans, load.stub.ImportActivity)
        person_times = sum(len(r.activity.roster) for r in imported)
        print(f"  {'person-times of verified service':<34} {person_times:>6}", flush=True)
    finally:
        await channel.close(None)
    return True


async def _volunteers(load: Loader[Stub], rng: random.Random, members: int) -> dict[str, list[str]]:
    """Each member registered as a volunteer in their branch's community: the volunteers'
    ids by community."""
    grids = plan_district().grids
    people = [
        (member_id_of(member_number(n)), grids[n % len(grids)][0][:8]) for n in range(members)
    ]
    registered = await load.each(
        "member volunteers",
        people,
        lambda p: load.stub.RegisterVolunteer(
            vpb.RegisterVolunteerRequest(
                member_id=p[0],
                community_code=p[1],
                skills=rng.sample(SKILLS, 2),
                phone=phone(rng),
            )
        ),
    )
    by_community: dict[str, list[str]] = {}
    for reply in registered:
        volunteer = reply.volunteer
        by_community.setdefault(volunteer.community_code, []).append(volunteer.volunteer_id)
    return by_community


def _activities(
    rng: random.Random, by_community: dict[str, list[str]], count: int
) -> list[vpb.ImportActivityRequest]:
    """A year of past activities, each with its crew's attendance and verified hours.

    The plan is anchored at the start of today (UTC), not at this second: a second run of
    the demo must plan the very same activities, or their source ids would name other
    activities (any start rounded to the hour crossing an hour between the two runs did
    that)."""
    today = datetime.now(UTC).replace(hour=0, minute=0, second=0, microsecond=0)
    per_activity = max(1, PERSON_TIMES // max(count, 1))
    plans: list[vpb.ImportActivityRequest] = []
    for n in range(count):
        community = rng.choice(sorted(by_community))
        brand, title = rng.choice(BRANDS)
        start = (today - timedelta(days=rng.uniform(2, 365))).replace(
            minute=0, second=0, microsecond=0
        )
        hours = rng.choice([2, 3, 4])
        crew = rng.sample(by_community[community], min(per_activity, len(by_community[community])))
        plans.append(_activity(community, brand, title, start, hours, crew, f"demo-activity-{n}"))
    return plans


def _activity(
    community: str, brand: str, title: str, start: datetime, hours: int, crew: list[str], key: str
) -> vpb.ImportActivityRequest:
    """A past activity of the brand in the community, its whole crew attending."""
    spec = vpb.CreateActivityRequest(
        brand=vpb.Brand.Value(brand),
        title=title,
        organizer=f"{community}社区",
        community_code=community,
        capacity=len(crew) + 3,
    )
    spec.starts_at.FromDatetime(start)
    spec.ends_at.FromDatetime(start + timedelta(hours=hours))
    attendance = [_attended(volunteer_id, start, hours) for volunteer_id in crew]
    return vpb.ImportActivityRequest(activity=spec, attendance=attendance, source_id=key)


def _attended(volunteer_id: str, start: datetime, hours: int) -> vpb.AttendanceRecord:
    """Checked in at the start, out at the end, every hour verified."""
    record = vpb.AttendanceRecord(volunteer_id=volunteer_id, verified_tenths_of_hours=hours * 10)
    record.checked_in_at.FromDatetime(start)
    record.checked_out_at.FromDatetime(start + timedelta(hours=hours))
    return record
